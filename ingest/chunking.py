"""Structure-following chunking with a budget counted in the embedding model's own tokens.

A chunk never crosses a section (a PDF page, a heading's block). Inside a section the text is cut into
sentences (English `.!?`, Japanese/Chinese `。！？`, paragraph breaks); sentences are packed into chunks of at
most `max_tokens` tokens, and each chunk repeats up to `overlap` tokens of whole sentences from the one
before. A sentence longer than the budget is cut at token boundaries, which are character boundaries.

Invariants (tests/ingest/test_chunking.py): chunk text == document text[char_start:char_end]; chunks come in
order and together cover every non-space character; every chunk fits the budget.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from index.embedders.base import Tokenizer
from index.records import ChunkRecord, chunk_id, embed_text
from index.text import cjk_share, sentence_spans
from ingest.document import ParsedDocument


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 250
    overlap: int = 40
    # budget for sections written mostly in Japanese/Chinese (None: max_tokens); the ensemble embedder's
    # English model stops at 256 pieces, but CJK questions are scored by e5 alone, which reads 510. Capped by
    # the tokenizer's own limit, so a MiniLM-only index still cuts at 256. The product default (450) is in
    # service/config.py; the library's is off, so an explicit max_tokens means what it says.
    cjk_max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ValueError(f"chunk max_tokens must be at least 16, got {self.max_tokens}")
        if not 0 <= self.overlap < self.max_tokens // 2:
            raise ValueError(f"chunk overlap must be in [0, max_tokens/2), got {self.overlap}")


class Chunker:
    def __init__(self, tokenizer: Tokenizer, config: ChunkingConfig | None = None) -> None:
        self.tok = tokenizer
        self.config = config or ChunkingConfig()

    def budget(self, heading_path: tuple[str, ...], text: str = "") -> int:
        """Tokens left for text once the heading prefix (embedded with every chunk) is counted."""
        room = self.tok.max_tokens - self.tok.count(embed_text(heading_path, ""))
        limit = self.config.max_tokens
        if self.config.cjk_max_tokens and cjk_share(text[:2000]) >= 0.5:
            limit = self.config.cjk_max_tokens
        return max(16, min(limit, room))

    def chunk(self, doc: ParsedDocument, source: str, doc_id: str) -> list[ChunkRecord]:
        chunks: list[ChunkRecord] = []
        offset = 0
        for section in doc.sections:
            budget = self.budget(section.heading_path, section.text)
            for a, b, n in self._pack(section.text, budget):
                start, end = offset + a, offset + b
                text = section.text[a:b]
                chunks.append(ChunkRecord(
                    id=chunk_id(source, start, text), document_id=doc_id, ordinal=len(chunks), text=text,
                    char_start=start, char_end=end, n_tokens=n, page=section.page,
                    heading_path=section.heading_path,
                ))
            offset += len(section.text) + len(ParsedDocument.SEPARATOR)
        return chunks

    def _pack(self, text: str, budget: int) -> list[tuple[int, int, int]]:
        """(start, end, tokens) of each chunk of one section."""
        tokens = self.tok.spans(text)
        starts = [t[0] for t in tokens]

        def count(a: int, b: int) -> int:
            return bisect.bisect_left(starts, b) - bisect.bisect_left(starts, a)

        units: list[tuple[int, int]] = []
        for a, b in sentence_spans(text):
            if count(a, b) <= budget:
                units.append((a, b))
            else:
                units.extend(self._split_long(text, a, b, starts, budget))
        out: list[tuple[int, int, int]] = []
        i = 0
        while i < len(units):
            j = i
            while j + 1 < len(units) and count(units[i][0], units[j + 1][1]) <= budget:
                j += 1
            a, b = units[i][0], units[j][1]
            n = self._exact(text[a:b])
            while n > budget and j > i:  # tokenizing the chunk alone may differ at its edges
                j -= 1
                b = units[j][1]
                n = self._exact(text[a:b])
            if n > budget:  # one unit over budget by the exact count (cut positions were approximate)
                halves = self._halve(text, units[i])
                if halves:
                    units[i : i + 1] = halves
                    continue
            out.append((a, b, n))
            if j + 1 >= len(units):
                break
            # the next chunk starts with the trailing sentences of this one that fit in `overlap` tokens
            k = j + 1
            while k - 1 > i and count(units[k - 1][0], b) <= self.config.overlap:
                k -= 1
            i = k
        return out

    def _split_long(
        self, text: str, a: int, b: int, starts: list[int], budget: int
    ) -> list[tuple[int, int]]:
        first = bisect.bisect_left(starts, a)
        last = bisect.bisect_left(starts, b)
        pieces = []
        step = max(8, budget - 8)  # a piece cut inside a word may gain a token or two when tokenized alone
        for k in range(first, last, step):
            s = a if k == first else starts[k]
            e = b if k + step >= last else starts[k + step]
            while e > s and text[e - 1].isspace():
                e -= 1
            while s < e and text[s].isspace():
                s += 1
            if s < e:
                pieces.append((s, e))
        return pieces

    def _exact(self, text: str) -> int:
        return self.tok.count(text)

    def _halve(self, text: str, unit: tuple[int, int]) -> list[tuple[int, int]] | None:
        """Split a unit in two at the cut position nearest its middle (None when it cannot be cut)."""
        a, b = unit
        cuts = [s for s, _ in self.tok.spans(text[a:b])][1:]
        if not cuts:
            return None
        mid = a + min(cuts, key=lambda c: abs(c - (b - a) / 2))
        left_end, right_start = mid, mid
        while left_end > a and text[left_end - 1].isspace():
            left_end -= 1
        return [(a, left_end), (right_start, b)]
