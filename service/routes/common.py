"""Helpers shared by the routes: filters, response shaping, declared error responses."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from index.records import DocumentRecord
from index.store import SearchFilter
from service.auth import LOCAL, PREFIX, AuthError, ForbiddenError, Principal
from service.retrieval import Candidate
from service.schemas import ChunkOut, DocumentOut, ErrorOut, LLMErrorOut, SearchFilters
from service.state import Services, services

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the body cannot be read (not UTF-8, not JSON, broken multipart)"},
    401: {"model": ErrorOut, "description": "missing, unknown or revoked API key"},
    429: {"model": ErrorOut, "description": "rate limit of this API key exceeded; see Retry-After"},
    413: {"model": ErrorOut, "description": "request body too large"},
    422: {"model": ErrorOut, "description": "invalid request: the detail names the field"},
}
LLM_ERROR: dict[int | str, dict[str, Any]] = {
    503: {"model": LLMErrorOut, "description": "the language model is unavailable (the retrieved sources are "
                                               "returned), or the service is overloaded (see Retry-After)"},
}
OVERLOADED: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorOut, "description": "overloaded: the request waited longer than QUELLE_QUEUE_TIMEOUT for "
                                            "a CPU slot; see Retry-After"},
}
FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut, "description": "this API key is not in the administrators' group"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "unknown document"}}
WRITES: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "another process is writing the index; retry later"},
    503: {"model": ErrorOut, "description": "the write waited longer than QUELLE_QUEUE_TIMEOUT behind this "
                                            "service's other index writes; see Retry-After"},
}


_bearer = HTTPBearer(auto_error=False, description="an API key from `quelle keys create`, or an OIDC token "
                                                     "(JWT) when QUELLE_OIDC_ISSUER is set")


async def principal(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                    svc: Services = Depends(services)) -> Principal:
    """Who is calling: the API key's owner and groups (every /v1 route depends on this). Async: an API key is
    one indexed SQLite lookup and a SHA-256, quicker than the thread-pool hop a plain `def` costs on every
    request; only an OIDC token, whose check may fetch the issuer's keys, goes to a thread."""
    if svc.keys is None:
        who = LOCAL
    elif credentials is None:
        raise AuthError("this route needs an API key: send 'Authorization: Bearer <key>'")
    elif credentials.credentials.startswith(PREFIX) or svc.oidc is None:
        who = svc.keys.verify(credentials.credentials)
    else:
        # on the verifier's own threads: a hanging identity provider never holds the ones other requests need
        context = contextvars.copy_context()
        who = await asyncio.get_running_loop().run_in_executor(
            svc.oidc.executor, functools.partial(context.run, svc.oidc.verify, credentials.credentials))
    if svc.limiter is not None and who.key_id:
        svc.limiter.check(who.key_id)
    request.state.principal = who
    return who


async def access(who: Principal = Depends(principal), svc: Services = Depends(services)) -> frozenset[str] | None:
    """The access-list entries that let the caller read a document (None: every document). Async: pure and
    quick, so no thread-pool hop (`principal` stays a thread: checking a key or a token may block)."""
    return who.access(svc.settings.admin_group)


async def admin(who: Principal = Depends(principal), svc: Services = Depends(services)) -> Principal:
    """The caller, who must be an administrator (upload, delete, change access lists)."""
    if not who.is_admin(svc.settings.admin_group):
        raise ForbiddenError(f"only members of the group {svc.settings.admin_group!r} may change documents")
    return who


def to_filter(f: SearchFilters | None, readable: frozenset[str] | None) -> SearchFilter | None:
    """The request's filters plus the caller's access: documents they may not read are never candidates."""
    if f is None and readable is None:
        return None
    return SearchFilter(
        document_ids=frozenset(f.document_ids) if f and f.document_ids is not None else None,
        kinds=frozenset(f.kinds) if f and f.kinds is not None else None,
        source_prefix=f.source_prefix if f else None,
        principals=readable,
    )


def chunk_out(c: Candidate) -> ChunkOut:
    h = c.hit
    return ChunkOut(chunk_id=h.chunk.id, document_id=h.chunk.document_id, source=h.source, title=h.title,
                    page=h.chunk.page, heading_path=list(h.chunk.heading_path), text=h.chunk.text, score=c.score,
                    dense_score=c.dense_score, keyword_score=c.keyword_score, char_start=h.chunk.char_start,
                    char_end=h.chunk.char_end, also_in=list(h.also_in))


def document_out(d: DocumentRecord, chunks: int | None = None, *, show_acl: bool = False) -> DocumentOut:
    return DocumentOut(id=d.id, source=d.source, title=d.title, kind=d.kind, pages=d.pages, size=d.size,
                       content_hash=d.content_hash, warnings=list(d.warnings), chunks=chunks,
                       acl=list(d.acl) if show_acl else None)
