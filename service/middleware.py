"""ASGI middleware: request ids, JSON access logs, metrics by route, and request body limits (413)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from service.logs import request_id
from service.metrics import Metrics

log = logging.getLogger("quelle.access")
Scope = dict[str, Any]


class _TooLarge(Exception):
    pass


class RequestMiddleware:
    def __init__(self, app: Any, *, metrics: Metrics, max_body: int, max_upload: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.max_upload = max_upload

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = headers.get("x-request-id", "")[:64] or uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        is_upload = scope["path"] == "/v1/documents" and scope["method"] == "POST"
        limit = self.max_upload if is_upload else self.max_body
        status = {"code": 500}
        started = time.perf_counter()

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await _reject(send_wrapper, limit)
                return
            received = 0

            async def receive_limited() -> dict[str, Any]:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise _TooLarge
                return message  # type: ignore[no-any-return]

            try:
                await self.app(scope, receive_limited, send_wrapper)
            except _TooLarge:
                await _reject(send_wrapper, limit)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope["method"], str(status["code"])).inc()
            self.metrics.latency.labels(path).observe(elapsed)
            log.info("request", extra={"fields": {"method": scope["method"], "path": scope["path"],
                                                  "route": path, "status": status["code"],
                                                  "ms": round(elapsed * 1000, 1)}})
            request_id.reset(token)


async def _reject(send: Any, limit: int) -> None:
    body = json.dumps({"error": "request body too large", "detail": f"the limit is {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
