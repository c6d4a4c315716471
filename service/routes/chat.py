"""OpenAI-compatible surface: `GET /v1/models` and `POST /v1/chat/completions`, so that any OpenAI client or
front end (Open WebUI, LibreChat, n8n, the official SDKs) can ask the documents.

- Models: `quelle` (the single-shot answer) and `quelle-agent` (agent mode, when a language model is set).
- `messages`: the last user message is the question; the user and assistant turns before it are the
  conversation, kept like a stored one (the first turns as sinks, then the recent window within the same
  token budget) and shown to the model as history, never as instructions. A client's system message is not
  an instruction to Quelle either: it is left out. Nothing of the request is stored.
- The answer's citations travel in the standard field, the message's `annotations` (`url_citation` with the
  document's page `url`, its `title`, and `start_index`/`end_index` of the text the marker stands for in
  `content`: from the previous marker to this one), and
  in full in the extra field `quelle` (citations, grounded, abstained, unsupported, steps).
- Streaming (`stream: true`) sends `chat.completion.chunk` events, then `data: [DONE]`. The text streams as it
  is produced; the last chunk before the finish carries the annotations and `quelle` with the checked answer
  (`quelle.answer`: sentences no passage supports removed), whose indices the annotations use.
- Errors come in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}` (service/app.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.answering import Answer, Answerer, Step, answer
from service.auth import Principal
from service.citations import MARKER, Citation, marker_numbers
from service.conversations import Turn
from service.errors import ChatRequestError, LLMUnavailableError, NotFoundError
from service.routes.common import ERRORS, access, principal, to_filter
from service.state import Services, services
from service.tokens import estimate_tokens

log = logging.getLogger(__name__)

router = APIRouter(tags=["openai"], dependencies=[Depends(principal)])

MODELS = {"quelle": "single", "quelle-agent": "agent"}
PATHS = ("/v1/models", "/v1/chat/completions")  # whose errors take OpenAI's shape


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, ... are accepted and not used
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Annotated[str, StringConstraints(max_length=20_000)] | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text or "" for p in self.content if p.type in ("text", "input_text"))
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's request body; fields Quelle has no use for (temperature, top_p, n, user, metadata, ...) are
    accepted and ignored, as front ends send them."""

    model_config = ConfigDict(extra="allow")
    model: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    messages: list[ChatMessage] = Field(min_length=1, max_length=500)
    stream: bool = False
    stream_options: StreamOptions | None = None


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorOut(BaseModel):
    error: OpenAIError


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Declared error responses: OpenAI's shape, except a body refused before routing (413)."""
    said = {400: "no question in `messages` (the last user message), or an invalid body",
            401: "missing, unknown or revoked API key", 404: "no such model", 429: "rate limit of this API key "
            "exceeded; see Retry-After", 503: "the language model is unavailable, or the service is overloaded"}
    out: dict[int | str, dict[str, Any]] = {s: {"model": OpenAIErrorOut, "description": said[s]} for s in statuses}
    out[413] = ERRORS[413]
    return out


@router.get("/v1/models", responses=_errors(401, 429))
def models(svc: Services = Depends(services)) -> dict[str, Any]:
    """The answerers an OpenAI client may name as its model."""
    created = int(svc.store.generation)  # stable across calls; no better creation time to give
    return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "quelle"}
                                       for name, mode in MODELS.items() if mode in svc.answerers]}


@router.post("/v1/chat/completions", responses=_errors(400, 401, 404, 429, 503))
def chat_completions(req: ChatRequest, request: Request, svc: Services = Depends(services),  # type: ignore[no-untyped-def]
                     who: Principal = Depends(principal), readable: frozenset[str] | None = Depends(access)):
    """Answer the last user message from the documents the caller may read, OpenAI's way (see the module)."""
    mode = MODELS.get(req.model)
    if mode is None or mode not in svc.answerers:
        raise NotFoundError(f"The model {req.model!r} does not exist here; GET /v1/models lists "
                            f"{', '.join(n for n, m in MODELS.items() if m in svc.answerers)}")
    question, turns = _conversation(req.messages)
    answerer = svc.answerer(mode)
    memory = svc.answers.conversations.recall(turns)
    flt = to_filter(None, readable)
    base = str(request.base_url).rstrip("/")
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    prompt_tokens = sum(estimate_tokens(m.text) for m in req.messages)
    if req.stream:
        plan = answerer.plan(question, None, None, flt, who.owner, memory=memory)
        deltas = answerer.deltas(plan)
        try:
            first = next(deltas, "")  # a model that is down: an error before the stream starts
        except LLMUnavailableError as exc:
            return _unavailable(exc)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(_chunks(answerer, plan, first, deltas, cid, created, req.model, base,
                                         prompt_tokens, include_usage),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    with answerer.hold():
        plan = answerer.plan(question, None, None, flt, who.owner, memory=memory)
        try:
            got = answer(answerer, plan)
        except LLMUnavailableError as exc:
            return _unavailable(exc)
    content = got.checked.answer
    return {"id": cid, "object": "chat.completion", "created": created, "model": req.model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content, "refusal": None,
                                     "annotations": url_citations(got, base)}}],
            "usage": _usage(prompt_tokens, content), "quelle": _extra(got)}


def _conversation(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """The question (the last user message) and the turns before it: each user message with the assistant's
    reply after it (system and tool messages left out)."""
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    if not users or not messages[users[-1]].text.strip():
        raise ChatRequestError("messages: the last user message is the question, and there is none with text")
    question = messages[users[-1]].text.strip()
    if len(question) > 4000:
        raise ChatRequestError("messages: the question (the last user message) is longer than 4000 characters")
    turns: list[Turn] = []
    pending: str | None = None
    for m in messages[: users[-1]]:
        if m.role == "user":
            pending = m.text.strip()
        elif m.role == "assistant" and pending is not None:
            turns.append(Turn(len(turns), pending, m.text.strip()))
            pending = None
    return question, turns


def url_citations(got: Answer, base: str) -> list[dict[str, Any]]:
    """One `url_citation` per marker: the span it stands for (the text since the previous marker, up to and
    with this one) and the page of the document it points to."""
    by_n = {c.n: c for c in got.checked.citations}
    text = got.checked.answer
    out, start = [], 0
    for m in MARKER.finditer(text):
        while start < m.start() and (text[start].isspace() or text[start] in ".,;:!?。、"):
            start += 1
        for n in dict.fromkeys(marker_numbers(m.group(0))):
            c = by_n.get(n)
            if c is None:
                continue
            url = f"{base}/{view_query(c)}"  # the web page's view of the page, the quote marked
            out.append({"type": "url_citation", "url_citation": {
                "url": url, "title": c.title + (f", p. {c.page}" if c.page else ""),
                "start_index": start, "end_index": m.end()}})
        start = m.end()
    return out


def view_query(c: Citation) -> str:
    """The web page's address for a citation: it opens the cited page (or section) with the quote marked."""
    query = {"doc": c.document_id, "chunk": c.chunk_id, **({"page": str(c.page)} if c.page else {}),
             "quote": c.quote[:300]}
    return "?" + urlencode(query, quote_via=quote)


def _extra(got: Answer) -> dict[str, Any]:
    return {"answer": got.checked.answer, "citations": [asdict(c) for c in got.checked.citations],
            "grounded": got.checked.grounded, "abstained": got.abstained, "unsupported": got.checked.unsupported,
            "steps": [asdict(s) for s in got.steps], "fallback": got.fallback or None}


def _usage(prompt_tokens: int, content: str) -> dict[str, int]:
    """Estimated (the answer may come from no model at all, or from several calls)."""
    completion = estimate_tokens(content)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion}


def _chunks(answerer: Answerer, plan: Any, first: str | Step, deltas: Iterator[str | Step], cid: str,
            created: int, model: str, base: str, prompt_tokens: int, include_usage: bool) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    parts: list[str] = []
    try:
        for item in itertools.chain([first] if first else [], deltas):
            if isinstance(item, str):  # an agent's steps reach an OpenAI client in `quelle.steps` at the end
                parts.append(item)
                yield chunk({"content": item})
    except LLMUnavailableError as exc:
        log.warning("language model unavailable during a stream: %s", exc.detail)
        yield f"data: {json.dumps(_error_body(exc.reason, 'api_error', None, 'model_unavailable'))}\n\n"
        yield "data: [DONE]\n\n"
        return
    got = answerer.finish(plan, "".join(parts))
    yield chunk({"annotations": url_citations(got, base)}, quelle=_extra(got))
    yield chunk({}, "stop")
    if include_usage:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
                "usage": _usage(prompt_tokens, got.checked.answer)}
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"


def _error_body(message: str, kind: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _unavailable(exc: LLMUnavailableError) -> JSONResponse:
    log.warning("language model unavailable: %s", exc.detail)
    return JSONResponse(status_code=503, headers={"Retry-After": "10"},
                        content=_error_body(f"language model unavailable: {exc.reason}", "api_error", None,
                                            "model_unavailable"))


_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
          429: "rate_limit_error"}
_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}


def openai_error(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """An error body in OpenAI's shape, for the routes of this module (service/app.py's handlers use it)."""
    return _error_body(message, _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"),
                       param, _CODES.get(status))
