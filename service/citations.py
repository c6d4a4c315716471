"""Citations checked after generation.

- A marker [n] that points at no provided context block is removed.
- Each sentence that cites [n] is checked for support against block n: the sentence must be close to one of
  the block's sentences (cosine of embeddings) or share most of its content words with the block.
- A citation's `quote` is that supporting sentence of the chunk (not the whole chunk), with its page.
- `grounded` is false when any sentence that makes a claim has no supported citation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from index.embedder import Embedder
from index.keyword import terms
from index.text import sentence_spans
from service.retrieval import Candidate

MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
SUPPORT_COSINE = 0.6
SUPPORT_OVERLAP = 0.7


@dataclass(frozen=True)
class Citation:
    n: int
    document_id: str
    source: str
    title: str
    page: int | None
    quote: str
    chunk_id: str
    score: float
    supported: bool


@dataclass(frozen=True)
class CheckedAnswer:
    answer: str
    citations: list[Citation]
    grounded: bool


def drop_invalid_markers(text: str, n_contexts: int) -> str:
    """Removes markers (or the numbers inside them) that point at no context block 1..n_contexts."""

    def keep(m: re.Match[str]) -> str:
        nums = [int(x) for x in m.group(1).split(",")]
        valid = [x for x in nums if 1 <= x <= n_contexts]
        return "[" + ", ".join(map(str, valid)) + "]" if valid else ""

    return MARKER.sub(keep, text)


def strip_invalid_markers(text: str, n_contexts: int) -> str:
    out = drop_invalid_markers(text, n_contexts)
    return re.sub(r"[ \t]+([.,;:!?。、])", r"\1", re.sub(r"[ \t]{2,}", " ", out)).strip()


_LEADING = re.compile(r"^(?:\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\])+")


def claims_of(answer: str) -> list[tuple[str, list[int]]]:
    """(sentence without markers, the block numbers it cites) for each sentence of an answer. Markers written
    after the full stop ("... year. [1] Next ...") belong to the sentence before them."""
    claims: list[tuple[str, set[int]]] = []
    for sentence in _sentences(answer):
        lead = _LEADING.match(sentence)
        if lead and claims:
            claims[-1][1].update(_numbers(lead.group(0)))
            sentence = sentence[lead.end():]
        bare = MARKER.sub("", sentence).strip()
        if bare and any(ch.isalnum() for ch in bare):
            claims.append((bare, set(_numbers(sentence))))
    return [(bare, sorted(ns)) for bare, ns in claims]


def _numbers(text: str) -> list[int]:
    return [int(x) for m in MARKER.finditer(text) for x in m.group(1).split(",")]


def _sentences(text: str) -> list[str]:
    return [" ".join(text[a:b].split()) for a, b in sentence_spans(text, skip_headings=True)]


class CitationChecker:
    def __init__(self, embedder: Embedder, *, cosine: float = SUPPORT_COSINE, overlap: float = SUPPORT_OVERLAP):
        self.embedder = embedder
        self.cosine = cosine
        self.overlap = overlap

    def check(self, answer: str, contexts: list[Candidate], *, abstained: bool = False) -> CheckedAnswer:
        answer = strip_invalid_markers(answer, len(contexts))
        if abstained:
            return CheckedAnswer(MARKER.sub("", answer).strip(), [], True)
        claims = claims_of(answer)
        chunk_sents = {n: _sentences(contexts[n - 1].hit.chunk.text) for _, ns in claims for n in ns}
        # a claim quoted word for word from its block needs no embedding: it is its own supporting span
        verbatim = {(c, n) for c, ns in claims for n in ns if c in chunk_sents[n]}
        to_embed = [c for c, ns in claims if any((c, n) not in verbatim for n in ns)]
        to_embed += [s for n, ss in chunk_sents.items() if any((c, n) not in verbatim for c, ns in claims
                                                                if n in ns) for s in ss]
        vectors = self._embed(to_embed)
        best: dict[int, tuple[float, str, bool]] = {}  # n -> (support score, quote, supported)
        grounded = bool(claims)
        for bare, cited in claims:
            supported_any = False
            for n in cited:
                if (bare, n) in verbatim:
                    score, quote = 1.0, bare
                else:
                    score, quote = self._support(bare, chunk_sents[n], vectors)
                ok = score >= self.cosine or _overlap(bare, contexts[n - 1].hit.chunk.text) >= self.overlap
                supported_any |= ok
                if n not in best or (ok, score) > (best[n][2], best[n][0]):
                    best[n] = (score, quote, ok)
            grounded &= supported_any
        citations = []
        for n in sorted(best):
            hit = contexts[n - 1].hit
            citations.append(Citation(n, hit.chunk.document_id, hit.source, hit.title, hit.chunk.page,
                                      best[n][1], hit.chunk.id, contexts[n - 1].score, best[n][2]))
        return CheckedAnswer(answer, citations, grounded)

    def _embed(self, texts: list[str]) -> dict[str, np.ndarray]:
        unique = list(dict.fromkeys(texts))
        if not unique:
            return {}
        return dict(zip(unique, self.embedder.embed_passages(unique), strict=True))

    @staticmethod
    def _support(claim: str, sentences: list[str], vectors: dict[str, np.ndarray]) -> tuple[float, str]:
        if not sentences:
            return 0.0, ""
        scores = [float(vectors[claim] @ vectors[s]) for s in sentences]
        i = int(np.argmax(scores))
        return scores[i], sentences[i]


def _overlap(claim: str, text: str) -> float:
    """Share of the claim's content words (or CJK bigrams) found in the text."""
    want = set(terms(claim, drop_stopwords=True))
    if not want:
        return 0.0
    return len(want & set(terms(text))) / len(want)
