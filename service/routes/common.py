"""Helpers shared by the routes: filters, response shaping, declared error responses."""

from __future__ import annotations

from typing import Any

from index.records import DocumentRecord
from index.store import SearchFilter
from service.retrieval import Candidate
from service.schemas import ChunkOut, DocumentOut, ErrorOut, LLMErrorOut, SearchFilters

ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "request body too large"},
    422: {"model": ErrorOut, "description": "invalid request: the detail names the field"},
}
LLM_ERROR: dict[int | str, dict[str, Any]] = {
    503: {"model": LLMErrorOut, "description": "the language model is unavailable; the retrieved sources are "
                                               "returned"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "unknown document"}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "another process is writing the index; retry later"},
}


def to_filter(f: SearchFilters | None) -> SearchFilter | None:
    if f is None:
        return None
    return SearchFilter(
        document_ids=frozenset(f.document_ids) if f.document_ids is not None else None,
        kinds=frozenset(f.kinds) if f.kinds is not None else None,
        source_prefix=f.source_prefix,
    )


def chunk_out(c: Candidate) -> ChunkOut:
    h = c.hit
    return ChunkOut(chunk_id=h.chunk.id, document_id=h.chunk.document_id, source=h.source, title=h.title,
                    page=h.chunk.page, heading_path=list(h.chunk.heading_path), text=h.chunk.text, score=c.score,
                    dense_score=c.dense_score, keyword_score=c.keyword_score, char_start=h.chunk.char_start,
                    char_end=h.chunk.char_end, also_in=list(h.also_in))


def document_out(d: DocumentRecord, chunks: int | None = None) -> DocumentOut:
    return DocumentOut(id=d.id, source=d.source, title=d.title, kind=d.kind, pages=d.pages, size=d.size,
                       content_hash=d.content_hash, warnings=list(d.warnings), chunks=chunks)
