"""Citations checked after generation.

- A marker [n] that points at no provided context block is removed; the others are renumbered 1..m in the
  order of their first use, and each citation keeps the number the answer shows (`renumber`).
- Each sentence that cites [n] is checked for support against block n: the sentence must be close to one of
  the block's sentences (cosine of embeddings) or share most of its content words with the block.
- A citation's `quote` is that supporting sentence of the chunk (not the whole chunk), with its page; `quotes`
  holds every span of the chunk that the answer's sentences citing it draw on, in order of use. An extractive
  answer brings its own quotes: exactly the passages it shows (`from_extract`).
- `grounded` is false when any sentence that makes a claim has no supported citation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from pydantic import Field

from index.embedder import Embedder
from index.keyword import terms
from index.text import sentence_spans
from service.retrieval import Candidate

MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
SUPPORT_COSINE = 0.6
SUPPORT_OVERLAP = 0.7


@dataclass(frozen=True)
class Citation:
    n: Annotated[int, Field(description="the number the answer shows as [n]: 1..m in order of first use")]
    document_id: str
    source: str
    title: str
    page: int | None
    quote: Annotated[str, Field(description="the words of the document that support the first sentence citing it")]
    chunk_id: str
    score: Annotated[float, Field(description="the chunk's retrieval score: its reciprocal-rank-fusion score "
                                              "(or the reranker's), which ordered the retrieved chunks; not a "
                                              "probability, comparable only within one answer")]
    supported: Annotated[bool, Field(description="its quote supports a sentence that cites it (whether every "
                                                 "sentence of the answer is supported: `grounded`)")]
    quotes: Annotated[tuple[str, ...], Field(description="every span this citation stands for, in order of use "
                                                         "(code lines kept as lines)")] = field(default=())


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


def renumber(text: str, order: list[int] | None = None) -> tuple[str, list[int]]:
    """Markers renumbered 1..m in order of first use. Returns the text and `order`: order[k - 1] is the old
    number that [k] now stands for. Applying it twice changes nothing. Pass the `order` of the text before
    this piece to go on numbering a stream."""
    order = [] if order is None else order

    def new(m: re.Match[str]) -> str:
        nums = []
        for x in marker_numbers(m.group(0)):
            if x not in order:
                order.append(x)
            k = order.index(x) + 1
            if k not in nums:
                nums.append(k)
        return "[" + ", ".join(map(str, nums)) + "]"

    return MARKER.sub(new, text), order


def reorder(contexts: list[Candidate], order: list[int]) -> list[Candidate]:
    """The contexts as renumbered: old block order[k - 1] first as block k, the uncited ones after."""
    rest = [c for n, c in enumerate(contexts, start=1) if n not in order]
    return [contexts[n - 1] for n in order] + rest


_LEADING = re.compile(r"^(?:\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\])+")


def claims_of(answer: str) -> list[tuple[str, list[int]]]:
    """(sentence without markers, the block numbers it cites) for each sentence of an answer. Markers written
    after the full stop ("... year. [1] Next ...") belong to the sentence before them."""
    claims: list[tuple[str, set[int]]] = []
    for sentence in _sentences(answer):
        lead = _LEADING.match(sentence)
        if lead and claims:
            claims[-1][1].update(marker_numbers(lead.group(0)))
            sentence = sentence[lead.end():]
        bare = MARKER.sub("", sentence).strip()
        if bare and any(ch.isalnum() for ch in bare):
            claims.append((bare, set(marker_numbers(sentence))))
    return [(bare, sorted(ns)) for bare, ns in claims]


def marker_numbers(text: str) -> list[int]:
    """The block numbers of every [n] / [n, m] marker in the text, in order."""
    return [int(x) for m in MARKER.finditer(text) for x in m.group(1).split(",")]


def _sentences(text: str) -> list[str]:
    return [" ".join(text[a:b].split()) for a, b in sentence_spans(text, skip_headings=True)]


class CitationChecker:
    def __init__(self, embedder: Embedder, *, cosine: float = SUPPORT_COSINE, overlap: float = SUPPORT_OVERLAP):
        self.embedder = embedder
        self.cosine = cosine
        self.overlap = overlap

    def check(self, answer: str, contexts: list[Candidate], *, abstained: bool = False) -> CheckedAnswer:
        """Citations of a generated answer, renumbered by first use (the stream already shows that numbering
        when it went through `service.answering.MarkerFilter`: then this renumbering changes nothing)."""
        answer = strip_invalid_markers(answer, len(contexts))
        if abstained:
            return CheckedAnswer(MARKER.sub("", answer).strip(), [], True)
        answer, order = renumber(answer)
        contexts = reorder(contexts, order)
        claims = claims_of(answer)
        chunk_sents = {n: _sentences(contexts[n - 1].hit.chunk.text) for _, ns in claims for n in ns}
        # a claim quoted word for word from its block needs no embedding: it is its own supporting span
        verbatim = {(c, n) for c, ns in claims for n in ns if c in chunk_sents[n]}
        to_embed = [c for c, ns in claims if any((c, n) not in verbatim for n in ns)]
        to_embed += [s for n, ss in chunk_sents.items() if any((c, n) not in verbatim for c, ns in claims
                                                                if n in ns) for s in ss]
        vectors = self._embed(to_embed)
        best: dict[int, tuple[float, str, bool]] = {}  # n -> (support score, quote, supported)
        used: dict[int, list[str]] = {}  # n -> the supporting spans, in order of use
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
                if ok and quote and quote not in used.setdefault(n, []):
                    used[n].append(quote)
                if n not in best or (ok, score) > (best[n][2], best[n][0]):
                    best[n] = (score, quote, ok)
            grounded &= supported_any
        citations = []
        for n in sorted(best):
            hit = contexts[n - 1].hit
            quotes = tuple(used.get(n) or [best[n][1]])
            citations.append(Citation(n, hit.chunk.document_id, hit.source, hit.title, hit.chunk.page,
                                      quotes[0], hit.chunk.id, contexts[n - 1].score, best[n][2], quotes))
        return CheckedAnswer(answer, citations, grounded)

    @staticmethod
    def from_extract(text: str, quotes: list[tuple[int, str]], contexts: list[Candidate]) -> CheckedAnswer:
        """An extractive answer, whose quotes are the exact spans it shows: (block n, quote) in order. The
        markers are renumbered by first use and every citation lists its quotes."""
        text, order = renumber(strip_invalid_markers(text, len(contexts)))
        contexts = reorder(contexts, order)
        citations = []
        for k in range(1, len(order) + 1):
            hit = contexts[k - 1].hit
            mine = tuple(dict.fromkeys(q for n, q in quotes if n == order[k - 1]))
            citations.append(Citation(k, hit.chunk.document_id, hit.source, hit.title, hit.chunk.page,
                                      mine[0] if mine else "", hit.chunk.id, contexts[k - 1].score, bool(mine),
                                      mine))
        return CheckedAnswer(text, citations, bool(citations) and all(c.supported for c in citations))

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
