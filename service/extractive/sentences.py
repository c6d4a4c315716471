"""The first embedded answerer, kept to measure the default against: it composes the answer from the
sentences of all retrieved chunks that are closest to the question (scored with the embedding model), each
carrying its [n]. It quotes sentences out of their order and context, and squashes code onto one line: the
failures that led to `passages.PassageAnswerer` (docs/quality.md).
"""

from __future__ import annotations

import numpy as np

from index.embedders.base import Embedder
from index.embedders.cache import similarities
from index.keyword import terms
from index.text import sentence_spans
from service.citations import defuse_markers
from service.extractive import Extract
from service.retrieval import Candidate


def candidate_sentences(contexts: list[Candidate]) -> list[tuple[int, str, int, int]]:
    """(block number, sentence, start, end) for every sentence of every context block."""
    out = []
    for n, cand in enumerate(contexts, start=1):
        text = cand.hit.chunk.text
        for a, b in sentence_spans(text, skip_headings=True):
            sentence = " ".join(text[a:b].split())
            if len(sentence) >= 12:
                out.append((n, sentence, a, b))
    return out


class SentenceAnswerer:
    def __init__(self, embedder: Embedder, *, max_sentences: int = 3, min_score: float = 0.35,
                 relative: float = 0.85, max_candidates: int = 24) -> None:
        self.embedder = embedder
        self.max_candidates = max_candidates
        self.max_sentences = max_sentences
        self.min_score = min_score
        self.relative = relative

    def extract(self, question: str, contexts: list[Candidate]) -> Extract | None:
        """The answer text with [n] markers, or None when no sentence is close enough to the question."""
        pool = candidate_sentences(contexts)
        if not pool:
            return None
        query_terms = set(terms(question, drop_stopwords=True))
        if len(pool) > self.max_candidates:  # embed only the sentences that share most words with the question
            shared = [len(query_terms & set(terms(p[1]))) for p in pool]
            keep = sorted(range(len(pool)), key=lambda i: (-shared[i], i))[: self.max_candidates]
            pool = [pool[i] for i in sorted(keep)]
        scores = similarities(self.embedder, question, [p[1] for p in pool])
        order = np.argsort(-scores)
        best = float(scores[order[0]])
        if best < self.min_score:
            return None
        picked: list[int] = []
        seen: set[str] = set()
        for i in order[: 4 * self.max_sentences]:
            if len(picked) == self.max_sentences or scores[i] < max(self.min_score, best * self.relative):
                break
            if picked and not query_terms & set(terms(pool[i][1])):
                continue  # after the best sentence, only sentences that share a word with the question
            if pool[i][1] not in seen:
                seen.add(pool[i][1])
                picked.append(int(i))
        # no quotes: its citations come from the checker, as they did (service/citations.py)
        return Extract(" ".join(f"{defuse_markers(pool[i][1])} [{pool[i][0]}]" for i in picked), [])
