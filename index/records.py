"""What the index stores: documents, chunks and search hits. Ids are derived from content."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field


def sha256_hex(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8") if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def document_id(source: str) -> str:
    """A document is identified by where it lives: re-ingesting a changed file keeps its id."""
    return sha256_hex("doc", source)[:16]


def chunk_id(source: str, char_start: int, text: str) -> str:
    return sha256_hex("chunk", source, str(char_start), text)[:24]


def text_hash(text: str) -> str:
    """Identical passages share this hash, so they are embedded once."""
    return sha256_hex("text", text)[:32]


HEADING_PREFIX_MAX_CHARS = 160


def embed_text(heading_path: tuple[str, ...], text: str) -> str:
    prefix = " > ".join(h for h in heading_path if h)[:HEADING_PREFIX_MAX_CHARS]
    return f"{prefix}\n{text}" if prefix else text


@dataclass(frozen=True)
class DocumentRecord:
    id: str
    source: str  # absolute POSIX path or URI
    title: str
    kind: str  # parser name: pdf, html, markdown, text, docx
    content_hash: str
    size: int
    mtime_ns: int
    pages: int | None = None
    warnings: tuple[str, ...] = ()
    # who may read it: "public", "group:<name>", "user:<name>" (any one match grants access)
    acl: tuple[str, ...] = ("public",)


@dataclass(frozen=True)
class ChunkRecord:
    id: str
    document_id: str
    ordinal: int
    text: str
    char_start: int
    char_end: int
    n_tokens: int
    page: int | None = None
    heading_path: tuple[str, ...] = ()

    @property
    def embed_text(self) -> str:
        """What is embedded: the heading path (context for short passages), then the text."""
        return embed_text(self.heading_path, self.text)

    @property
    def text_hash(self) -> str:
        return text_hash(self.embed_text)


@dataclass(frozen=True)
class Hit:
    """A chunk returned by a search, with where it came from."""

    chunk: ChunkRecord
    score: float
    source: str
    title: str
    also_in: tuple[str, ...] = field(default=())  # other sources holding the identical passage


PUBLIC = "public"


# a name: no ASCII control characters, spaces or commas (commas separate entries); the same pattern is in the
# OpenAPI schema, so it is spelled in terms every regex engine reads alike
ACL_ENTRY = r"^(public|(group|user):[^\x00-\x20\x7f,]+)$"
_ACL_ENTRY = re.compile(ACL_ENTRY)


def check_acl(entries: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A normalised access list, or ValueError naming the bad entry."""
    out = []
    for e in entries:
        e = e.strip(" ")
        if not _ACL_ENTRY.match(e):
            raise ValueError(f"access list entry {e!r}: use 'public', 'group:<name>' or 'user:<name>' "
                             "(names without spaces, commas or control characters)")
        out.append(e)
    if not out:
        raise ValueError("an access list needs at least one entry ('public', 'group:<name>' or 'user:<name>')")
    return tuple(sorted(set(out)))


def readable(acl: tuple[str, ...] | list[str], tokens: frozenset[str] | None) -> bool:
    """Whether a caller holding these access tokens may read a document with this access list (None: anyone)."""
    return tokens is None or not tokens.isdisjoint(acl)


def collapse(pairs: list[tuple[int, float]], text_hash: dict[int, str], k: int
             ) -> tuple[list[tuple[int, float]], dict[int, list[int]]]:
    """The first `k` distinct passages of `pairs` (row, score), best first, and for each the other rows holding
    the same text (`text_hash` of each row): a passage found again at another path is one hit listing the other
    sources. Every backend collapses its candidates this way."""
    kept: list[tuple[int, float]] = []
    first: dict[str, int] = {}  # passage -> row of its first occurrence
    also: dict[int, list[int]] = {}  # row kept -> rows of its other occurrences
    for row, score in pairs:
        th = text_hash[row]
        if th in first:
            if first[th] in also:
                also[first[th]].append(row)
            continue
        first[th] = row
        if len(kept) < k:
            kept.append((row, score))
            also[row] = []
    return kept, also
