from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from service.agent import AgentPlan
from service.answering import Answerer, Step, answer
from service.auth import Principal
from service.errors import LLMUnavailableError
from service.routes.common import ERRORS, LLM_ERROR, access, principal, to_filter
from service.schemas import AskRequest, AskResponse, ErrorOut
from service.state import Services, services

log = logging.getLogger(__name__)

router = APIRouter(tags=["answers"], dependencies=[Depends(principal)])

STREAM_DOC: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {"schema": {
    "type": "object", "required": ["event", "data"],
    "description": "one Server-Sent Event: in agent mode first a `step` {thought, tool, input, observation, "
                   "blocks, note} as each step happens; `delta` {text}, then `citations` {answer, citations, "
                   "grounded, abstained, unsupported, steps, fallback} (`answer` is the checked text: unsupported "
                   "sentences removed), then `done` {session_id, generation}; `error` {error, reason, sources} if "
                   "the model fails",
    "properties": {"event": {"type": "string", "enum": ["step", "delta", "citations", "done", "error"]},
                   "data": {"type": "string", "description": "the event's JSON object"}}}}}}}


NOT_ENABLED: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut, "description": "agent mode, or a tool the request names, is not enabled here"}}


@router.post("/v1/ask", response_model=AskResponse, responses={**ERRORS, **LLM_ERROR, **STREAM_DOC, **NOT_ENABLED})
def ask(req: AskRequest, request: Request, svc: Services = Depends(services),  # type: ignore[no-untyped-def]
        who: Principal = Depends(principal), readable: frozenset[str] | None = Depends(access)):
    """Answer a question from the documents the caller may read, with checked citations. `stream: true` (or
    `Accept: text/event-stream`) sends Server-Sent Events. A `session_id` continues the caller's own
    conversation of that id, or starts one: ids are per caller, so another caller's id is just a new
    conversation (no id can be taken from its owner or tested for existence)."""
    owner = who.owner
    answerer = svc.answerer(req.mode, req.tools if req.mode == "agent" else None)
    flt = to_filter(req.filters, readable)
    if req.stream or "text/event-stream" in request.headers.get("accept", ""):
        plan = answerer.plan(req.question, req.session_id, req.top_k, flt, owner)
        deltas = answerer.deltas(plan)
        try:
            first = next(deltas, "")  # fail with a 503 before the stream starts, when the model is down
        except LLMUnavailableError as exc:
            return _llm_error(exc)
        return StreamingResponse(_events(answerer, plan, first, deltas), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    with answerer.hold():  # one turn at the CPU gate for the whole extractive answer
        plan = answerer.plan(req.question, req.session_id, req.top_k, flt, owner)
        try:
            got = answer(answerer, plan)
        except LLMUnavailableError as exc:
            return _llm_error(exc)
    agent = req.mode == "agent"
    return AskResponse(answer=got.checked.answer, citations=got.checked.citations,
                       grounded=got.checked.grounded, abstained=got.abstained,
                       unsupported=got.checked.unsupported, session_id=got.session_id,
                       generation=got.generation, steps=got.steps if agent else None,
                       fallback=(got.fallback or None) if agent else None)


def _llm_error(exc: LLMUnavailableError) -> JSONResponse:
    log.warning("language model unavailable: %s", exc.detail)
    return JSONResponse(status_code=503, headers={"Retry-After": "10"},
                        content={"error": "language model unavailable", "reason": exc.reason, "sources": exc.sources})


def _sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _events(answerer: Answerer, plan: Any, first: str | Step, deltas: Iterator[str | Step]) -> Iterator[str]:
    parts: list[str] = []
    agent = isinstance(plan, AgentPlan)
    try:
        for item in itertools.chain([first] if first else [], deltas):
            if isinstance(item, Step):
                yield _sse("step", asdict(item))
            else:
                parts.append(item)
                yield _sse("delta", {"text": item})
    except LLMUnavailableError as exc:
        log.warning("language model unavailable during a stream: %s", exc.detail)
        yield _sse("error", {"error": "language model unavailable", "reason": exc.reason, "sources": exc.sources})
        return
    got = answerer.finish(plan, "".join(parts))
    extra = {"steps": [asdict(s) for s in got.steps], "fallback": got.fallback or None} if agent else {}
    yield _sse("citations", {"answer": got.checked.answer, "grounded": got.checked.grounded,
                             "abstained": got.abstained, "unsupported": got.checked.unsupported,
                             "citations": [asdict(c) for c in got.checked.citations], **extra})
    yield _sse("done", {"session_id": got.session_id, "generation": got.generation})
