"""Reorder the retrieved chunks by the unit that best answers the question, before the answer is chosen.

Fusion ranks whole chunks, by a vector for the whole chunk and the words in it; the answerer then quotes one
sentence or code block of the best five. On the answer sets (docs/quality.md) the chunk that holds the fact was
often 6th to 20th: a chunk about the topic in general outranked the one with the command. This reranker scores
each of the first `rerank_candidates` chunks (20) by
- its place in the fused list (60 / (61 + rank): 0.98 first, 0.75 twentieth, as reciprocal rank fusion does);
- the closeness in meaning of its best unit to the question (the same embedder; the `units_per_chunk` (2) units
  that share most of the question's words are embedded, not all of them, each by its first 120 characters, as
  the passage answerer embeds units: what the reranker compared, the answerer reuses (service/extractive/meaning.py));
- `focus_weight` when it holds what the question asks for: a command or code for "how do I ...", a path for
  "which file ...", a number for "how many ..." (service/extractive/question.py, `Focus`).
Measured on the answer sets: the fact in the top five chunks for 0.958 / 0.875 / 0.854 of the English /
Japanese / Chinese questions, against 0.896 / 0.708 / 0.812 by fusion alone (docs/quality.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from index.embedders.base import Embedder
from service.extractive.meaning import Meaning
from service.extractive.question import Focus, Wanted, stems
from service.extractive.units import units


class UnitReranker:
    answers_only = True  # /v1/search keeps fusion's order (and its speed): this serves the answerer

    def __init__(self, embedder: Embedder, *, units_per_chunk: int = 2, focus_weight: float = 0.2,
                 max_chars: int = 120, meaning: Meaning | None = None, bilingual: bool = True) -> None:
        self.meaning = meaning or Meaning(embedder)  # shared with the passage answerer, which reuses what it compares
        self.max_chars = max_chars  # a unit is embedded by its first characters: a long code block costs no more
        self.units_per_chunk = units_per_chunk
        self.focus_weight = focus_weight
        self.bilingual = bilingual  # as the passage answerer: a Japanese or Chinese word matches its English words

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        """One score per passage; `passages` come in the fused order, which the score keeps as a prior."""
        focus = Focus.of(query)
        want = Wanted.of(query, bilingual=self.bilingual)
        rewards: list[float] = []
        picked: list[tuple[int, str]] = []  # (passage, the start of a unit to embed)
        for i, text in enumerate(passages):
            candidates = [u for u in units(text) if u.kind != "heading" and len(u.text) >= 8]
            rewards.append(max((focus.reward(u) for u in candidates), default=0.0) if focus.asks else 0.0)
            # the units that share most of the question's words (a stable sort: ties in the chunk's order)
            shared = sorted(candidates, key=lambda u: -len(want.found(stems(u.text))))
            picked += [(i, u.text[: self.max_chars]) for u in shared[: self.units_per_chunk]]
        self.meaning.begin()  # a new answer
        sims = self.meaning(query, [t for _, t in picked])
        best = [0.0] * len(passages)
        for (i, _), sim in zip(picked, sims, strict=True):
            best[i] = max(best[i], float(sim))
        return [60 / (61 + i) + best[i] + self.focus_weight * rewards[i] for i in range(len(passages))]
