from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from service.answering import Plan
from service.auth import Principal
from service.errors import LLMUnavailableError
from service.routes.common import ERRORS, LLM_ERROR, access, principal, to_filter
from service.schemas import AskRequest, AskResponse
from service.state import Services, services

log = logging.getLogger(__name__)

router = APIRouter(tags=["answers"], dependencies=[Depends(principal)])

STREAM_DOC: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {"schema": {
    "type": "object", "required": ["event", "data"],
    "description": "one Server-Sent Event: `delta` {text}, then `citations` {answer, citations, grounded, "
                   "abstained, unsupported} (`answer` is the checked text: unsupported sentences removed), then "
                   "`done` {session_id, generation}; `error` {error, reason, sources} if the model fails",
    "properties": {"event": {"type": "string", "enum": ["delta", "citations", "done", "error"]},
                   "data": {"type": "string", "description": "the event's JSON object"}}}}}}}


@router.post("/v1/ask", response_model=AskResponse, responses={**ERRORS, **LLM_ERROR, **STREAM_DOC})
def ask(req: AskRequest, request: Request, svc: Services = Depends(services),  # type: ignore[no-untyped-def]
        who: Principal = Depends(principal), readable: frozenset[str] | None = Depends(access)):
    """Answer a question from the documents the caller may read, with checked citations. `stream: true` (or
    `Accept: text/event-stream`) sends Server-Sent Events. A `session_id` continues the caller's own
    conversation of that id, or starts one: ids are per caller, so another caller's id is just a new
    conversation (no id can be taken from its owner or tested for existence)."""
    owner = who.owner
    if req.stream or "text/event-stream" in request.headers.get("accept", ""):
        plan = svc.answers.plan(req.question, req.session_id, req.top_k, to_filter(req.filters, readable), owner)
        deltas = svc.answers.deltas(plan)
        try:
            first = next(deltas, "")  # fail with a 503 before the stream starts, when the model is down
        except LLMUnavailableError as exc:
            return _llm_error(exc)
        return StreamingResponse(_events(svc, plan, first, deltas), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    with svc.answers.hold():  # one turn at the CPU gate for the whole extractive answer
        plan = svc.answers.plan(req.question, req.session_id, req.top_k, to_filter(req.filters, readable), owner)
        try:
            answer = svc.answers.answer(plan)
        except LLMUnavailableError as exc:
            return _llm_error(exc)
    return AskResponse(answer=answer.checked.answer, citations=answer.checked.citations,
                       grounded=answer.checked.grounded, abstained=answer.abstained,
                       unsupported=answer.checked.unsupported, session_id=answer.session_id,
                       generation=answer.generation)


def _llm_error(exc: LLMUnavailableError) -> JSONResponse:
    log.warning("language model unavailable: %s", exc.detail)
    return JSONResponse(status_code=503, headers={"Retry-After": "10"},
                        content={"error": "language model unavailable", "reason": exc.reason, "sources": exc.sources})


def _sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _events(svc: Services, plan: Plan, first: str, deltas: Iterator[str]) -> Iterator[str]:
    parts = [first]
    if first:
        yield _sse("delta", {"text": first})
    try:
        for delta in deltas:
            parts.append(delta)
            yield _sse("delta", {"text": delta})
    except LLMUnavailableError as exc:
        log.warning("language model unavailable during a stream: %s", exc.detail)
        yield _sse("error", {"error": "language model unavailable", "reason": exc.reason, "sources": exc.sources})
        return
    answer = svc.answers.finish(plan, "".join(parts))
    yield _sse("citations", {"answer": answer.checked.answer, "grounded": answer.checked.grounded,
                             "abstained": answer.abstained, "unsupported": answer.checked.unsupported,
                             "citations": [asdict(c) for c in answer.checked.citations]})
    yield _sse("done", {"session_id": answer.session_id, "generation": answer.generation})
