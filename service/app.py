"""The FastAPI application. Nothing happens at import: `create_app(settings)` builds the app, and its lifespan
loads the embedding model, opens the index and connects the answerer."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from index.embedders.base import Embedder
from index.embedders.cache import cached
from index.embedders.factory import runtime
from index.errors import ConfigError, IndexLockedError, IndexMismatchError, QuelleError
from index.store import backend as store_backend
from index.store import open_state, open_store
from service import extractive
from service.agent import Agent, AgentConfig
from service.answering import Answerer, AnswerService
from service.auth import AuthError, AuthUnavailable, ForbiddenError, KeyStore
from service.citations import CitationChecker
from service.config import Settings
from service.conversations import ConversationStore
from service.errors import ChatRequestError, IngestUnavailable, LLMUnavailableError, NotEnabled, NotFoundError
from service.extractive.meaning import Meaning
from service.gate import CpuGate, Overloaded
from service.hooks import HookRefused, Perception, SyncJobs
from service.llm import ChatModel, OpenAIChatModel, Usage
from service.metrics import Metrics
from service.middleware import RequestMiddleware
from service.previews import PreviewError, Previews
from service.ratelimit import RateLimited, RateLimiter
from service.retrieval import (
    ABSTAIN_POLICIES,
    DEFAULT_FUSION,
    DEFAULT_POLICY,
    FUSIONS,
    RetrievalConfig,
    Retriever,
)
from service.routes import ask, chat, documents, health, hooks, search, slack, web
from service.state import IngestFile, Services

log = logging.getLogger("quelle.service")


def create_app(settings: Settings, *, embedder: Embedder | None = None, ingest_file: IngestFile | None = None,
               llm: ChatModel | None = None, llm_http_client: Any = None,
               perception: Perception | None = None) -> FastAPI:
    """`embedder`, `llm` and `llm_http_client` let tests and the CLI hand over parts they already built;
    `perception` (the CLI's ingestion of changes) enables webhooks and `settings.watch`."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = build_services(settings, metrics, embedder=embedder, ingest_file=ingest_file, llm=llm,
                             llm_http_client=llm_http_client)
        app.state.services = svc
        stop_listening = _listen(svc, perception)
        svc.ready = True
        if svc.store.documents(0, 1)[1] == 0:
            log.warning("the index in %s holds no documents: every answer will be 'not found' until some are "
                        "ingested (quelle ingest FOLDER, or POST /v1/documents)", settings.store().where)
        log.info("ready", extra={"fields": {"generation": svc.store.generation, "model": svc.embedder.model_id,
                                            "encoder": runtime(svc.embedder),
                                            "answerer": "llm" if svc.answers.llm else "extractive"}})
        try:
            yield
        finally:
            svc.ready = False
            stop_listening()
            svc.answers.conversations.close()
            svc.store.close()
            svc.previews.close()
            if svc.keys is not None:
                svc.keys.close()
            if svc.oidc is not None:
                svc.oidc.close()

    # no trailing-slash redirect: Starlette builds its Location from the request's Host header, so a
    # caller could make the service point elsewhere; "/v1/documents/" is a plain 404
    # /docs and /redoc from assets shipped in the package (fastapi-offline), not from a CDN: they work offline
    app = FastAPIOffline(title="Quelle", version="0.1.0", lifespan=lifespan, redirect_slashes=False,
                         description="Answers questions from your own documents, with cited sources.")
    for module in (search, ask, chat, documents, health, web, hooks, slack):
        app.include_router(module.router)
    _install_error_handlers(app)
    app.add_middleware(RequestMiddleware, metrics=metrics, max_body=settings.max_body_bytes,
                       max_upload=settings.max_upload_bytes)
    return app


def _listen(svc: Services, perception: Perception | None) -> Callable[[], None]:
    """Start what the settings ask the service to listen to: the chat listener, webhooks' worker, the folder
    watcher (the last two need `perception`, the CLI's ingestion); returns the function that stops them."""
    settings, stop = svc.settings, threading.Event()
    watching = None
    if settings.slack_signing_secret is not None:
        from service.slack import SlackListener

        svc.slack = SlackListener(
            svc, signing_secret=settings.slack_signing_secret.get_secret_value(),
            bot_token=settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None,
            api_url=settings.slack_api_url, users=settings.slack_users)
    if perception is not None and settings.webhook_secret is not None:
        svc.jobs = SyncJobs(perception, svc.metrics, tolerance=settings.webhook_tolerance)
    if perception is not None and settings.watch:
        svc.watcher = perception.watcher(settings.watch, svc.metrics)
        watching = threading.Thread(target=svc.watcher.run, args=(stop,), name="quelle-watch", daemon=True)
        watching.start()
    elif settings.watch:
        raise ConfigError("QUELLE_WATCH needs the ingestion pipeline: start the service with `quelle serve`")

    def stop_listening() -> None:
        stop.set()
        if watching is not None:
            watching.join(timeout=30)
        for part in (svc.jobs, svc.slack):
            if part is not None:
                part.close()

    return stop_listening


def build_services(settings: Settings, metrics: Metrics, *, embedder: Embedder | None, ingest_file: IngestFile | None,
                   llm: ChatModel | None, llm_http_client: Any) -> Services:
    if embedder is None:
        embedder = settings.load_embedder(serving=True)
    embedder = cached(embedder, settings.embed_cache)  # queries and answer sentences come back often
    where = settings.store()
    if store_backend(where).recorded_model(where) is None:  # a fresh service starts with an empty index
        open_store(where, model_id=embedder.model_id, dim=embedder.dim, writable=True).close()
    store = open_store(where, model_id=embedder.model_id, dim=embedder.dim)
    meaning = Meaning(embedder)  # one answer's unit comparisons, made by the reranker and reused by the answerer
    retriever = Retriever(store, embedder, retrieval_config(settings, embedder.model_id),
                          settings.reranker(embedder, meaning))
    if llm is None and settings.use_llm:
        if not settings.llm_model:
            raise ConfigError("QUELLE_ANSWERER=llm needs QUELLE_LLM_MODEL")
        chat = OpenAIChatModel(
            base_url=settings.llm_base_url, model=settings.llm_model, timeout=settings.llm_timeout,
            api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            max_retries=settings.llm_max_retries, temperature=settings.llm_temperature, http_client=llm_http_client)

        def on_usage(u: Usage) -> None:
            metrics.llm_tokens.labels("prompt").inc(u.prompt_tokens)
            metrics.llm_tokens.labels("completion").inc(u.completion_tokens)

        chat.on_usage = on_usage
        llm = chat
    conversations = ConversationStore(open_state(where, "conversations"), sink_turns=settings.sink_turns,
                                      window_turns=settings.window_turns, history_tokens=settings.history_tokens,
                                      ttl_seconds=settings.session_ttl_seconds,
                                      max_sessions=settings.max_sessions_per_caller)
    gate = CpuGate(settings.max_concurrent or os.cpu_count() or 2, max_wait=settings.queue_timeout)
    answers = AnswerService(retriever, conversations, CitationChecker(embedder),
                            extractive.build(settings.extractive, embedder, meaning),
                            metrics, llm=llm, default_k=settings.top_k, context_window=settings.llm_context_window,
                            answer_tokens=settings.llm_answer_tokens, gate=gate)
    if llm is not None:
        conversations.summariser = answers.summarise
    embedder.embed_query("warm-up")  # the first query should not pay for lazy initialisation
    keys = None
    if settings.auth == "keys":
        keys = KeyStore.open(where)
    else:
        log.warning("AUTHENTICATION IS OFF (QUELLE_AUTH=off): anyone who can reach this service can read every "
                    "document. Use it for local trials only.")
    limiter = RateLimiter(settings.rate_limit, settings.rate_burst) if settings.rate_limit > 0 else None
    oidc = None
    if keys is not None and settings.oidc_issuer and settings.oidc_jwks_url:
        from service.oidc import OidcVerifier

        oidc = OidcVerifier(settings.oidc_issuer, settings.oidc_jwks_url, settings.oidc_audience,
                            user_claim=settings.oidc_user_claim, groups_claim=settings.oidc_groups_claim,
                            refetch_seconds=settings.oidc_refetch_seconds, timeout=settings.oidc_timeout)
    elif keys is not None and (settings.oidc_issuer or settings.oidc_jwks_url):
        raise ConfigError("OIDC needs both QUELLE_OIDC_ISSUER and QUELLE_OIDC_JWKS_URL")
    answerers: dict[str, Answerer] = {"single": answers}
    if llm is not None and settings.agent:
        answerers["agent"] = Agent(answers, llm, AgentConfig(
            protocol=settings.agent_protocol, constraint=settings.agent_constraint, tools=tuple(settings.agent_tools),
            max_steps=settings.agent_max_steps, step_tokens=settings.agent_step_tokens, timeout=settings.agent_timeout,
            context_window=settings.llm_context_window, plan_first=settings.agent_plan))
    previews = Previews(timeout=settings.preview_timeout, cache_bytes=settings.preview_cache_bytes)
    svc = Services(settings, embedder, store, retriever, answers, metrics, ingest_file, keys, limiter, oidc,
                   gate, answerers, previews)
    lock = getattr(ingest_file, "lock", None)
    if lock is not None:  # API writes wait for the watcher's and webhooks' runs (queue timeout), not a 409
        svc._writes = lock
    return svc


def retrieval_config(settings: Settings, model_id: str) -> RetrievalConfig:
    """The embedder's calibrated fusion and abstention policy, with any setting given overriding it."""
    policy = ABSTAIN_POLICIES.get(model_id, DEFAULT_POLICY)
    if settings.abstain_threshold is not None:
        policy = replace(policy, dense_alone=settings.abstain_threshold)
    fusion = FUSIONS.get(model_id, DEFAULT_FUSION)
    given = {name: getattr(settings, name) for name in ("rrf_k", "dense_weight", "keyword_weight", "cjk_dense_weight")
             if name in settings.model_fields_set}
    fusion = replace(fusion, **given)
    return RetrievalConfig(candidates=settings.candidates, rrf_k=fusion.rrf_k, dense_weight=fusion.dense_weight,
                           keyword_weight=fusion.keyword_weight, cjk_dense_weight=fusion.cjk_dense_weight,
                           abstain=policy)


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method the path has: from the OpenAPI paths (FastAPI nests included routers, so the top-level
    route list does not name them) and the plain routes."""
    parts = path.rstrip("/").split("/") or [""]
    methods: set[str] = set()
    for template, ops in app.openapi().get("paths", {}).items():
        want = template.rstrip("/").split("/")
        if len(want) == len(parts) and all(w == p or (w.startswith("{") and w.endswith("}") and p)
                                           for w, p in zip(want, parts, strict=True)):
            methods |= {m.upper() for m in ops}
    for r in app.router.routes:
        regex, own = getattr(r, "path_regex", None), getattr(r, "methods", None)
        if regex is not None and own and regex.match(path):
            methods |= set(own)
    return sorted(methods)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        got = await _invalid(request, exc)
        if request.url.path in chat.PATHS:  # OpenAI's shape and status for OpenAI's routes
            body = json.loads(bytes(got.body))
            first = (body.get("detail") or [{}])[0]
            return JSONResponse(status_code=400, content=chat.openai_error(400, body["error"], first.get("field")))
        return got

    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        sent = request.headers.get("content-type", "")
        if "json" not in sent and any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors()):
            # the body was never read as JSON: say what to send, not what the parser made of it
            problem = {"field": "body", "message": f"expected a JSON object with Content-Type: application/json, "
                                                   f"got {sent or 'no Content-Type'}"}
            return JSONResponse(status_code=422, content={"error": f"invalid request: body: {problem['message']}",
                                                          "detail": [problem]})
        problems = []
        for e in exc.errors():
            loc = list(e.get("loc", ()))
            if loc and loc[0] in ("body", "query", "path", "header"):
                loc = loc[1:]
            field = ".".join(str(p) for p in loc)
            message = e.get("msg", "invalid")
            got = e.get("input")
            if e.get("type") == "string_pattern_mismatch" and isinstance(got, str):
                message = f"{got[:100]!r} does not match {e.get('ctx', {}).get('pattern', 'the pattern')}"
            problems.append({"field": field or "body", "message": message})
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return JSONResponse(status_code=422, content={"error": f"invalid request: {summary}", "detail": problems})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Framework errors (unknown route, wrong method, unreadable body) in the same shape as ours; a 405
        lists every method the path has, not only the first route's."""
        headers = dict(exc.headers or {})
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 405:
            allowed = _allowed_methods(request.app, request.url.path)
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}"
        titles = {400: "bad request", 404: "not found", 405: "method not allowed"}
        title = titles.get(exc.status_code, "error")
        content = chat.openai_error(exc.status_code, f"{title}: {detail}") if request.url.path in chat.PATHS else {
            "error": title, "detail": detail}
        return JSONResponse(status_code=exc.status_code, headers=headers, content=content)

    def simple(status: int, title: str, headers: Callable[[Any], dict[str, str]] | None = None):  # type: ignore[no-untyped-def]
        """A handler answering `status` with the service's error shape (OpenAI's on its routes), and the
        headers `headers(exc)` names."""
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            content = chat.openai_error(status, f"{title}: {exc}") if request.url.path in chat.PATHS else {
                "error": title, "detail": str(exc)}
            return JSONResponse(status_code=status, content=content, headers=headers(exc) if headers else None)
        return handler

    app.add_exception_handler(AuthError, simple(401, "unauthorized", lambda _: {"WWW-Authenticate": "Bearer"}))
    app.add_exception_handler(RateLimited, simple(
        429, "too many requests", lambda exc: {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}))
    app.add_exception_handler(ForbiddenError, simple(403, "forbidden"))
    app.add_exception_handler(AuthUnavailable, simple(503, "cannot check credentials",
                                                      lambda _: {"Retry-After": "10"}))
    app.add_exception_handler(Overloaded, simple(503, "overloaded",
                                                 lambda exc: {"Retry-After": str(exc.retry_after)}))
    app.add_exception_handler(NotFoundError, simple(404, "not found"))

    @app.exception_handler(HookRefused)
    async def hook_refused(_: Request, exc: HookRefused) -> JSONResponse:
        titles = {400: "invalid request", 401: "unauthorized", 403: "forbidden", 404: "not enabled"}
        return JSONResponse(status_code=exc.status, content={"error": titles.get(exc.status, "refused"),
                                                             "detail": str(exc)})
    app.add_exception_handler(ChatRequestError, simple(400, "invalid request"))
    app.add_exception_handler(IngestUnavailable, simple(501, "not enabled"))
    app.add_exception_handler(NotEnabled, simple(403, "not enabled"))
    app.add_exception_handler(IndexLockedError, simple(409, "index busy"))
    app.add_exception_handler(IndexMismatchError, simple(500, "index built with another model"))
    app.add_exception_handler(LLMUnavailableError, simple(503, "language model unavailable"))

    @app.exception_handler(PreviewError)
    async def preview(_: Request, exc: PreviewError) -> JSONResponse:
        titles = {404: "not found", 409: "document changed", 422: "cannot draw the page", 503: "too slow"}
        return JSONResponse(status_code=exc.status, content={"error": titles.get(exc.status, "error"),
                                                             "detail": str(exc)},
                            headers={"Retry-After": "10"} if exc.status == 503 else None)

    @app.exception_handler(QuelleError)
    async def other(_: Request, exc: QuelleError) -> JSONResponse:
        log.error("unhandled Quelle error: %s", exc)
        return JSONResponse(status_code=500, content={"error": "internal error", "detail": str(exc)})
