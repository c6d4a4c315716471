"""The agent's tools: small functions behind one protocol, each taking one string argument.

Access control is enforced here, inside every tool, from the caller's filter (`ToolContext.flt`: the access
tokens of the API key plus the request's own filters), never by the model: whatever the model writes as an
argument, a tool only ever returns documents the caller may read. An unknown document and a forbidden one
get the same reply, so a tool cannot be used to test whether a document exists.

Every chunk a tool returns becomes a numbered block ([n]) of the run (`Observed`): the final answer may cite
those blocks only.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from index.records import ChunkRecord, DocumentRecord, Hit, readable
from index.store import SearchFilter
from service.agent.calc import EXPRESSION, CalcError, calculate, show
from service.retrieval import Candidate, Retriever

OBSERVATION_CHARS = 700  # of one block, as the model sees it in a step


@dataclass
class Observed:
    """The blocks the run's tools returned, numbered 1..n in the order they were first seen."""

    blocks: list[Candidate] = field(default_factory=list)
    _by_chunk: dict[str, int] = field(default_factory=dict)

    def add(self, cand: Candidate) -> int:
        n = self._by_chunk.get(cand.hit.chunk.id)
        if n is None:
            self.blocks.append(cand)
            n = self._by_chunk[cand.hit.chunk.id] = len(self.blocks)
        return n


@dataclass
class ToolContext:
    retriever: Retriever
    flt: SearchFilter | None  # the caller's access (principals) and the request's filters
    top_k: int
    observed: Observed
    today: Callable[[], dt.date] = dt.date.today


@dataclass
class Observation:
    text: str  # what the model reads (and the caller sees in `steps`)
    blocks: list[int] = field(default_factory=list)  # the block numbers it returned


class Tool(Protocol):
    name: str
    description: str
    arg: str  # the name of its one argument ("" when it takes none)

    def schema(self) -> dict[str, Any]:
        """The JSON schema of its argument's value (a string)."""
        ...

    def run(self, value: str, ctx: ToolContext) -> Observation: ...


def allowed(doc: DocumentRecord | None, flt: SearchFilter | None) -> bool:
    """Whether the caller may see this document under the request's filters (the same test search applies)."""
    if doc is None:
        return False
    if flt is None:
        return True
    return (readable(doc.acl, flt.principals)
            and (flt.document_ids is None or doc.id in flt.document_ids)
            and (flt.kinds is None or doc.kind in flt.kinds)
            and (flt.source_prefix is None or doc.source.startswith(flt.source_prefix)))


def block_text(n: int, cand: Candidate, limit: int = OBSERVATION_CHARS) -> str:
    h = cand.hit
    where = [f"document {h.chunk.document_id}"]
    if h.chunk.page:
        where.append(f"page {h.chunk.page}")
    if h.chunk.heading_path:
        where.append("section " + " > ".join(h.chunk.heading_path))
    body = " ".join(h.chunk.text.split())
    if len(body) > limit:
        body = body[:limit].rsplit(" ", 1)[0] + " ..."
    return f"[{n}] {h.title} ({', '.join(where)}): {body}"


class Search:
    name = "search"
    description = "Search the documents for passages about a topic. Input: a short query."
    arg = "query"

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 2, "maxLength": 200}

    def run(self, value: str, ctx: ToolContext) -> Observation:
        query = " ".join(value.split())
        if len(query) < 2:
            return Observation("error: the query is empty")
        got = ctx.retriever.search(query, ctx.top_k, ctx.flt, for_answer=True)
        if not got.candidates:
            return Observation(f"No document matches {query!r}.")
        numbers = [ctx.observed.add(c) for c in got.candidates]
        lines = [block_text(n, c) for n, c in zip(numbers, got.candidates, strict=True)]
        if not got.relevant:
            lines.insert(0, "(weak matches: these passages may not answer it)")
        return Observation("\n".join(lines), numbers)


_REF = re.compile(r"^\[?(\d{1,4})\]?$")
_DOC_PAGE = re.compile(r"^([\w-]{1,64})(?:\s*(?:[:#]|\bp(?:age)?\.?)\s*(\d{1,5}))?$", re.I)


class Read:
    name = "read"
    description = ("Read the text around a block an earlier step returned (input: its number, e.g. 3), or a "
                   "document by the id list_documents gave (input: the id, optionally followed by 'page 2').")
    arg = "ref"
    max_chunks = 4

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": 80}

    def run(self, value: str, ctx: ToolContext) -> Observation:
        ref = value.strip()
        store = ctx.retriever.store
        if m := _REF.match(ref):
            n = int(m.group(1))
            if not 1 <= n <= len(ctx.observed.blocks):
                return Observation(f"error: there is no block [{n}] yet")
            around = ctx.observed.blocks[n - 1].hit.chunk
            doc = store.document(around.document_id)
            if not allowed(doc, ctx.flt):  # its access may have changed since it was observed
                return Observation(f"error: block [{n}] can no longer be read")
            chunks = _section(store.chunks_of(around.document_id), around, self.max_chunks)
        elif m := _DOC_PAGE.match(ref):
            doc = store.document(m.group(1))
            if doc is None or not allowed(doc, ctx.flt):
                return Observation(f"error: no readable document with id {m.group(1)!r}")
            chunks = store.chunks_of(doc.id)
            if m.group(2):
                page = int(m.group(2))
                chunks = [c for c in chunks if c.page == page]
                if not chunks:
                    return Observation(f"error: document {doc.id} has no text on page {page}")
            chunks = chunks[: self.max_chunks]
        else:
            return Observation("error: give a block number like 3, or a document id, optionally with 'page P'")
        assert doc is not None
        cands = [Candidate(Hit(c, 0.0, doc.source, doc.title), 0.0) for c in chunks]
        numbers = [ctx.observed.add(c) for c in cands]
        return Observation("\n".join(block_text(n, c, 2 * OBSERVATION_CHARS)
                                     for n, c in zip(numbers, cands, strict=True)), numbers)


def _section(chunks: list[ChunkRecord], around: ChunkRecord, most: int) -> list[ChunkRecord]:
    """The chunks of the block's section (same headings), nearest first, in document order."""
    same = [c for c in chunks if c.heading_path == around.heading_path] or [around]
    same.sort(key=lambda c: (abs(c.ordinal - around.ordinal), c.ordinal))
    return sorted(same[:most], key=lambda c: c.ordinal)


class ListDocuments:
    name = "list_documents"
    description = "List the documents you may read: id and title. Input: words of the title, or '' for all."
    arg = "filter"
    most = 20
    scan = 5000

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": 80}

    def run(self, value: str, ctx: ToolContext) -> Observation:
        words = value.lower().split()
        store = ctx.retriever.store
        principals = ctx.flt.principals if ctx.flt is not None else None
        found: list[DocumentRecord] = []
        offset = 0
        while len(found) < self.most and offset < self.scan:
            page, total = store.documents(offset, 500, principals=principals)
            found += [d for d in page if allowed(d, ctx.flt)
                      and all(w in f"{d.title} {d.source}".lower() for w in words)]
            offset += 500
            if offset >= total:
                break
        if not found:
            return Observation("No readable document matches." if words else "No readable document.")
        lines = [f"{d.id}: {d.title} ({d.kind}{f', {d.pages} pages' if d.pages else ''})"
                 for d in found[: self.most]]
        if len(found) > self.most:
            lines.append("... and more: narrow the filter")
        return Observation("\n".join(lines))


class Calculate:
    name = "calculate"
    description = "Compute arithmetic: numbers, + - * / % ** and brackets only. Input: the expression."
    arg = "expression"

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": EXPRESSION, "maxLength": 200}

    def run(self, value: str, ctx: ToolContext) -> Observation:
        try:
            return Observation(f"{value.strip()} = {show(calculate(value))}")
        except CalcError as exc:
            return Observation(f"error: {exc}")


class Today:
    name = "today"
    description = "Today's date. Input: ''."
    arg = ""

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": 0}

    def run(self, value: str, ctx: ToolContext) -> Observation:
        day = ctx.today()
        return Observation(f"{day.isoformat()} ({day.strftime('%A')})")


TOOLS: dict[str, Tool] = {t.name: t for t in (Search(), Read(), ListDocuments(), Calculate(), Today())}
