"""The embedded default answerer: the best short passage of the retrieved chunks, quoted whole.

The contexts are cut into units (service/extractive/units.py: sentences, code blocks, headings). Each unit is
scored against the question by
- meaning: its embedding's similarity to the question's, scaled within the retrieved units (the best 1,
  the worst 0), so the score means the same for every embedder and language;
- words: the share of the question's content words it holds, each weighted by how rare it is among the
  retrieved units (a word every unit has decides nothing); words are compared by their stems; a unit is
  scored as holding at least half the share of the unit before it, which it goes on from (a command after the
  sentence that introduces it);
- focus: what the question asks for: a command ("how do I ..."), a place ("which file ..."), a number
  ("how often ..."); a unit that holds that kind of thing scores higher;
- where it sits: the words its chunk's headings share with the question, and the chunk's retrieval rank.
The best unit that is not a heading anchors the passage, which grows to whole neighbouring units that belong
to it: the sentence that introduces a code block ("use the following commands:"), the block a sentence
introduces, a sentence that goes on from it ("However, since 3.12.0 ..."), the sentence a pronoun refers to, and
on each side a neighbour of the same paragraph that holds what the question asks for (a command, a path, a
number): "マシン名の現在の値は ... cat /proc/sys/kernel/hostname" takes the sentence before it, "この名前は
/etc/hostname ファイルに保存され ..." (docs/quality.md).
A second passage, from elsewhere (another chunk, or not next to the first), is added when it scores within a
margin of the first and repeats none of its sentences: on the answer sets the fact is often in the runner-up
(the command after the sentence that describes the topic), and an answer spread over two places needs both
(docs/quality.md). Each passage is followed by its [n], and quoted exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from index.embedders.base import Embedder
from index.text import mostly_cjk
from service.citations import defuse_markers
from service.extractive import Extract, Quote
from service.extractive.meaning import Meaning
from service.extractive.question import COMMANDISH, NUMBER, PATH, VENUE, Focus, Wanted, stems
from service.extractive.units import Unit, units
from service.retrieval import Candidate, names_found

_CONTINUES = re.compile(r"^(?:However|But|Since|As of|Starting|Beginning|Note|Except|Unless|Otherwise|Instead|"
                        r"ただし|しかし|なお|但|不过|但是)", re.I)
_REFERS = re.compile(r"^(?:(?:It|This|These|They|That|Those|Such|Its|Their|Then|Here)\b|In this case|"
                     r"この|その|これ|それ|こうした|该|这|此|它|其)", re.I)
_INSTRUCTION = re.compile(r"^To\b|\b(?:use|run|execute|type|invoke|enter|call)\b|使|実行|入力"
                          r"|使用|执行|运行|输入", re.I)

# what each feature means (see `features`), and its weight: fitted on the answer sets by bench/tune_answers.py
# (listwise: the unit that holds the expected fact should score highest among its question's units)
FEATURES = ("meaning", "closest", "words", "all_words", "heading", "code_for_how", "command_for_how",
            "instruction_for_how", "path_for_where", "number_for_how_much", "chunk_rank", "length")
WEIGHTS = (1.0, 0.3, 0.8, 0.3, 0.25, 1.2, 1.0, 0.3, 1.2, 1.2, 0.15, 0.0)


@dataclass
class Scored:
    n: int  # context block
    rank: int  # position of the unit in its chunk
    unit: Unit
    score: float = 0.0
    words: float = 0.0  # weighted share of the question's words
    sim: float | None = None  # raw similarity to the question (embedded units only)


class PassageAnswerer:
    def __init__(self, embedder: Embedder, *, max_embedded: int = 32, max_units: int = 3, max_chars: int = 700,
                 min_chars: int = 160, second_margin: float = 2.0, grow_margin: float = 1.0,
                 code_margin: float = 3.0, min_meaning: float = 0.35, min_coverage: float = 0.3,
                 second_rule: int = 2, weights: Sequence[float] = WEIGHTS, names_in_passage: bool = True,
                 same_script_coverage: bool = True, meaning: Meaning | None = None,
                 embed_chars: int | None = 120, focus_neighbours: bool = True, bilingual: bool = True,
                 cross_script: float = 0.03, context_words: float = 0.5) -> None:
        # the coverage bar only where the passages are in the question's script: an untranslated English section
        # that answers a Japanese question shares none of its words (meaning still decides)
        self.same_script_coverage = same_script_coverage
        self.meaning = meaning or Meaning(embedder)  # shared with the unit reranker: units it compared are reused
        self.max_embedded = max_embedded
        # a unit is embedded by its first characters (None: all of it), as the unit reranker embeds it, so that
        # one answer embeds a unit once (service/extractive/meaning.py); 120 against all: the same fact hit and
        # abstention on the answer sets, a third less time per cold answer (docs/performance.md)
        self.embed_chars = embed_chars
        self.max_units = max_units
        self.max_chars = max_chars
        self.min_chars = min_chars
        # scores are in the units of the fitted weights (log-odds): a second passage must come within
        # `second_margin` of the first; a neighbour joins when it comes within `grow_margin` of the anchor
        # (`code_margin` for a code block right after the sentence that introduces it)
        self.min_meaning = min_meaning  # below this raw similarity no quoted unit answers (as the answerer before)
        self.min_coverage = min_coverage  # for a Japanese/Chinese question: below this share of its words the
        # passages miss its point
        self.second_margin = second_margin
        self.second_rule = second_rule  # 0: a second passage must add question words; 1: or what the question
        # asks for (a command, a path, a number) that the first lacks; 2: any passage within the margin
        self.grow_margin = grow_margin
        self.code_margin = code_margin
        self.weights = np.asarray(weights, dtype=np.float32)
        self.names_in_passage = names_in_passage  # the question's names must be in the quoted passages' chunks
        # a neighbour of the anchor's paragraph that holds what the question asks for (a command, a path, a
        # number) joins the passage: on the answer sets fact hit 0.771 / 0.521 / 0.562 -> 0.812 / 0.562 / 0.583
        # (en / ja / zh), abstention unchanged, answers ~8% longer (docs/quality.md)
        self.focus_neighbours = focus_neighbours
        self.bilingual = bilingual  # a Japanese or Chinese word also matches its English words
        # e5 rates a Japanese or Chinese question lower against English text than against text in its own script
        # (the retrieved units' mean cosine 0.809 vs 0.845 in Japanese, 0.832 vs 0.879 in Chinese): an untranslated
        # English unit's similarity gets this much back before units are compared. On the answer sets 0.025-0.03
        # gave the most facts in both languages; 0.04 loses a Chinese one (docs/quality.md)
        self.cross_script = cross_script
        # a unit is scored as holding at least this share of the words of the unit before it in its chunk: the
        # sentence or the command that carries the fact often shares none of the question's words, the sentence
        # that leads to it does. On the answer sets 0.5 took Japanese fact hit 0.729 -> 0.750, one question (0.3
        # and 0.7: 0.729; 0.7 also loses a Chinese one), English and Chinese unchanged (docs/quality.md)
        self.context_words = context_words

    def extract(self, question: str, contexts: list[Candidate]) -> Extract | None:
        try:
            chunks = [units(c.hit.chunk.text) for c in contexts]
            pool = self.pool(chunks)
            if not pool:
                return None
            x, weight = self.features(question, contexts, pool)
            return self.choose(question, contexts, chunks, pool, x @ self.weights, weight)
        finally:
            self.meaning.end()

    @staticmethod
    def pool(chunks: list[list[Unit]]) -> list[Scored]:
        return [Scored(n, i, u) for n, us in enumerate(chunks, start=1) for i, u in enumerate(us)
                if u.kind != "heading" and len(u.text) >= 8]

    def choose(self, question: str, contexts: list[Candidate], chunks: list[list[Unit]], pool: list[Scored],
               scores: np.ndarray, weight: dict[str, float]) -> Extract | None:
        for s, v in zip(pool, scores, strict=True):
            s.score = float(v)
        best = max(pool, key=lambda s: s.score)
        # the same words may sit in several retrieved chunks (overlaps, repeated pages): quote the copy with the
        # most of its own context after it (a sentence that ends "... the following commands:" at the end of
        # one chunk has its commands in the next)
        best = max((s for s in pool if s.unit.text == best.unit.text),
                   key=lambda s: (len(chunks[s.n - 1]) - s.rank, -s.n))
        focus = Focus.of(question)
        first = self._grow(best, chunks[best.n - 1], pool, focus)
        windows = [first]
        second = self._second(first, pool, chunks, question)
        if second is not None:
            windows.append(second)
        evidence = self._evidence(question, windows, contexts, weight)
        if not self.answers(evidence):
            return None
        return _render(windows, contexts, evidence)

    def answers(self, evidence: dict[str, float]) -> bool:
        """Whether the passages answer at all (retrieval's abstention policy has decided first): a quoted unit
        must be at least `min_meaning` close to the question (the bar of the sentence answerer before it), and
        the passages with their headings must hold at least `min_coverage` of the question's words, weighted
        by rarity, a word found in no retrieved unit weighing most: "Falcot 公司的首席执行官是谁？" retrieves
        passages about Falcot, none about a CEO. Only for Japanese and Chinese questions, where e5's scores
        separate answerable from unanswerable questions least: on the answer sets (docs/quality.md) 0.3 takes
        their abstention from 0.25 / 0.08 to 0.67 / 0.67 for one answer in 48, while in English it abstained on
        no more unanswerable questions and lost four answers in 48. Not where the passages are mostly in Latin
        script (`same_script_coverage`): they cannot share a Japanese or Chinese question's words."""
        return (evidence["meaning"] >= self.min_meaning and evidence.get("names", 1.0) >= 1.0
                and (evidence["coverage"] >= self.min_coverage or not evidence["cjk"]))

    def _evidence(self, question: str, windows: list[list[Scored]], contexts: list[Candidate],
                  weight: dict[str, float]) -> dict[str, float]:
        """How well the chosen passages answer: the best raw similarity of a quoted unit to the question, and
        the weighted share of all the question's words (those found nowhere weigh most) in the passages and
        their headings."""
        want = Wanted.of(question, bilingual=self.bilingual)
        heaviest = max(weight.values(), default=1.0)
        full = {t: weight.get(t, heaviest) for t in want.terms}
        seen: set[str] = set()
        for w in windows:
            seen |= set().union(*(stems(s.unit.text) for s in w))
            seen |= stems(" ".join(contexts[w[0].n - 1].hit.chunk.heading_path))
        total = sum(full.values())
        focus = Focus.of(question)
        named = 1.0
        if self.names_in_passage:
            named = float(names_found(question, [contexts[w[0].n - 1] for w in windows]))
        cjk = mostly_cjk(question)
        if cjk and self.same_script_coverage:
            cjk = mostly_cjk(" ".join(s.unit.text for w in windows for s in w))
        return {"cjk": float(cjk), "names": named,
                "meaning": max((s.sim for w in windows for s in w if s.sim is not None), default=0.0),
                "coverage": sum(full[t] for t in want.found(seen)) / total if total else 0.0,
                "focus": max((focus.reward(s.unit) for w in windows for s in w), default=0.0)
                if focus.asks else 1.0}

    # -- scoring -------------------------------------------------------------------------------------------
    def features(self, question: str, contexts: list[Candidate], pool: list[Scored]
                 ) -> tuple[np.ndarray, dict[str, float]]:
        """One row of FEATURES per unit of the pool, and the weight of each question word found in it."""
        want = Wanted.of(question, bilingual=self.bilingual)
        unit_terms = [want.found(want.held(s.unit.text)) for s in pool]  # the question's words each unit holds
        df = {t: sum(t in ts for ts in unit_terms) for t in want.terms}
        weight = {t: math.log(1 + (len(pool) + 1) / (df[t] + 0.5)) for t in want.terms if df[t]}
        total = sum(weight.values())
        focus = Focus.of(question)
        heading = {}
        for n, c in enumerate(contexts, start=1):
            ht = want.found(stems(" ".join(c.hit.chunk.heading_path)))
            heading[n] = sum(w for t, w in weight.items() if t in ht) / total if total else 0.0
        own = {(s.n, s.rank): sum(w for t, w in weight.items() if t in ts) / total if total else 0.0
               for s, ts in zip(pool, unit_terms, strict=True)}
        x = np.zeros((len(pool), len(FEATURES)), dtype=np.float32)
        for i, (s, ts) in enumerate(zip(pool, unit_terms, strict=True)):
            s.words = own[s.n, s.rank]  # its own words: the passage grows by these (`_grow`)
            text = s.unit.text
            code = s.unit.kind == "code"
            # it goes on from the unit before it ("すなわち atrm task-number を実行してください。", a command after the
            # sentence that introduces it): it is scored as holding at least a share of that unit's words
            x[i, 2] = max(s.words, self.context_words * own.get((s.n, s.rank - 1), 0.0))
            x[i, 3] = len(ts) / len(want) if len(want) else 0.0
            x[i, 4] = heading[s.n]
            x[i, 5] = focus.command and code
            x[i, 6] = focus.command and not code and bool(COMMANDISH.search(text))
            x[i, 7] = focus.command and not code and bool(_INSTRUCTION.search(text))
            # a place: a path for "which file", an address or a mailing list for "where do I ask"
            x[i, 8] = focus.place and bool(PATH.search(text)) or focus.venue and bool(VENUE.search(text))
            x[i, 9] = focus.quantity and bool(NUMBER.search(text))
            x[i, 10] = 1 / s.n
            x[i, 11] = min(len(text), 400) / 400
        # meaning: embed the most promising units only (each costs an embedding)
        pre = x @ self.weights
        keep = sorted(range(len(pool)), key=lambda i: -pre[i])[: self.max_embedded]
        sims = self.meaning(question, [pool[i].unit.text[: self.embed_chars] for i in keep])
        if self.cross_script and mostly_cjk(question):  # a Japanese or Chinese question: its English units
            sims = sims + np.asarray([0.0 if mostly_cjk(pool[i].unit.text) else self.cross_script for i in keep],
                                     dtype=sims.dtype)
        lo, hi = float(sims.min()), float(sims.max())
        for i, sim in zip(keep, sims, strict=True):
            x[i, 0] = (sim - lo) / (hi - lo) if hi > lo else 1.0
            x[i, 1] = float(sim) == hi
            pool[i].sim = float(sim)
        return x, weight

    # -- passages ------------------------------------------------------------------------------------------
    def _grow(self, anchor: Scored, chunk: list[Unit], pool: list[Scored], focus: Focus) -> list[Scored]:
        """The anchor and the whole neighbouring units that belong with it, in order."""
        by_rank = {s.rank: s for s in pool if s.n == anchor.n}
        window = [anchor]

        def unit_at(i: int) -> Scored | None:
            if 0 <= i < len(chunk) and chunk[i].kind != "heading":
                return by_rank.get(i) or Scored(anchor.n, i, chunk[i])
            return None

        def size() -> int:
            return sum(len(s.unit.text) for s in window)

        first, last = window[0], window[-1]
        prev = unit_at(first.rank - 1)
        if prev is not None and (first.unit.kind == "code" and prev.unit.kind == "prose" or
                                 _REFERS.match(first.unit.text) or prev.unit.text.rstrip().endswith((":", "："))
                                 or (len(first.unit.text) < self.min_chars and prev.unit.block == first.unit.block
                                     and prev.words > 0)):
            window.insert(0, prev)
        while len(window) < self.max_units:
            last = window[-1]
            nxt = unit_at(last.rank + 1)
            if nxt is None or size() + len(nxt.unit.text) > self.max_chars:
                break
            follows = last.unit.text.rstrip().endswith((":", "：")) or _CONTINUES.match(nxt.unit.text) or (
                nxt.unit.kind == "code" and last.unit.kind == "prose" and nxt.unit.block == last.unit.block + 1
                and nxt.score >= anchor.score - self.code_margin) or nxt.score >= anchor.score - self.grow_margin or (
                size() < self.min_chars and nxt.unit.block == last.unit.block and nxt.words > 0)
            if not follows:
                break
            window.append(nxt)
        if self.focus_neighbours and focus.asks:
            # one more unit on each side, of the same paragraph, when it holds what the question asks for
            for side in (-1, 1):
                edge = window[0] if side < 0 else window[-1]
                near = unit_at(edge.rank + side)
                if near is not None and near.unit.block == edge.unit.block and focus.reward(near.unit) > 0 \
                        and size() + len(near.unit.text) <= self.max_chars:
                    window.insert(0 if side < 0 else len(window), near)
        return window

    def _second(self, first: list[Scored], pool: list[Scored], chunks: list[list[Unit]],
                question: str) -> list[Scored] | None:
        taken = {(s.n, s.rank) for s in first}
        said = {s.unit.text for s in first}  # overlapping chunks repeat sentences: never quote one twice
        want = Wanted.of(question, bilingual=self.bilingual)
        have = want.found(set().union(*(stems(s.unit.text) for s in first)))
        focus = Focus.of(question)
        had = max(focus.reward(s.unit) for s in first)
        for s in sorted(pool, key=lambda s: -s.score):
            if s.score < max(x.score for x in first) - self.second_margin:
                return None
            if (s.n, s.rank) in taken or s.unit.text in said or any(
                    s.n == f.n and abs(s.rank - f.rank) <= 1 for f in first):
                continue
            adds = bool(want.found(stems(s.unit.text)) - have) or self.second_rule == 2 or (
                self.second_rule == 1 and focus.asks
                and focus.reward(s.unit) > had)
            if adds:
                grown = self._grow(s, chunks[s.n - 1], pool, focus)
                kept = [g for g in grown if g.unit.text not in said]
                if kept and all(a.rank + 1 == b.rank for a, b in zip(kept, kept[1:], strict=False)):
                    return kept
        return None


def _render(windows: list[list[Scored]], contexts: list[Candidate], evidence: dict[str, float]) -> Extract:
    parts, quotes = [], []
    for window in windows:
        n = window[0].n
        text = contexts[n - 1].hit.chunk.text
        start, end = window[0].unit.start, window[-1].unit.end
        shown = defuse_markers(_show([s.unit for s in window], fence=True))
        quotes.append(Quote(n, _show([s.unit for s in window], fence=False), start, end))
        parts.append(f"{shown} [{n}]" if window[-1].unit.kind != "code" else f"{shown}\n[{n}]")
        assert text[start:end].strip(), "a quote is a span of its chunk"
    return Extract("\n\n".join(parts), quotes, evidence)


def _show(window: list[Unit], *, fence: bool) -> str:
    """Prose sentences joined by a space; a code block on its own lines (fenced as Markdown code in answers)."""
    out = ""
    for u in window:
        if u.kind == "code":
            block = f"```\n{u.text}\n```" if fence else u.text
            out = out.rstrip() + ("\n" if out else "") + block + "\n"
        else:
            out += ("" if not out or out.endswith("\n") else " ") + u.text
    return out.strip()
