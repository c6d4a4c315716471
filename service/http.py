"""The HTTP server's own bounds: header size and count, and clients too slow to send a request.

uvicorn parses headers with httptools and has neither a header size limit (one anonymous 100 MB header stalled
every other request for 15 s: httptools joins a long header piece by piece) nor a read timeout (a connection
that sends nothing, or a header or body one byte every 2 s, is held for ever). `guarded_protocol` returns
uvicorn's httptools protocol with those bounds, given to `uvicorn.run(http=...)`:

- a request head (request line and headers) over `max_header_bytes`, or with more than `max_headers` headers,
  is answered 431 and the connection closed;
- a head must arrive within `header_timeout` seconds of its first byte (of the connection, for the first
  request): else 408 and close;
- a body must arrive within `body_timeout` seconds plus one second per `body_min_rate` bytes received (the
  rule of Apache's mod_reqtimeout, so a 50 MB upload on a slow line is fine and a trickle is not); time the
  service spends not reading (its buffer is full) does not count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("quelle.http")


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 32_768
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 20.0
    body_min_rate: float = 500.0  # bytes per second that extend the body's deadline by one second


class _TooManyHeaders(Exception):
    pass


def _response(status: int, reason: str, error: str, detail: str) -> bytes:
    body = json.dumps({"error": error, "detail": detail}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n\r\n").encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits = HttpLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._headers = 0
        self._in_head = True
        self._body_bytes = 0
        self._body_started = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._arm(self.limits.header_timeout)  # a connection that sends nothing is a head that never comes

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- the head -------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._in_head:
            if self._timer is None:  # the first byte of the next request on a kept-alive connection
                self._arm(self.limits.header_timeout)
            end = data.find(b"\r\n\r\n")
            head = len(data) if end < 0 else end + 4
            if self._head_bytes + head > self.limits.max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large", "request headers too large",
                             f"the request line and headers may take at most {self.limits.max_header_bytes} bytes")
                return
            self._head_bytes += head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _TooManyHeaders):
                self._refuse(431, "Request Header Fields Too Large", "too many request headers",
                             f"a request may have at most {self.limits.max_headers} headers")
            else:
                self.logger.warning("Invalid HTTP request received.")
                self._disarm()
                self.send_400_response("Invalid HTTP request received.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._headers = True, 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        if self._headers > self.limits.max_headers:
            raise _TooManyHeaders
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        self._disarm()
        self._body_bytes, self._body_started = 0, time.monotonic()
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.more_body and self._expects_body():
            self._arm(self.limits.body_timeout)

    # -- the body -------------------------------------------------------------------------------------
    def _expects_body(self) -> bool:
        headers = dict(self.headers)
        return bool(headers.get(b"transfer-encoding")) or int(headers.get(b"content-length", b"0") or 0) > 0

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes = True, 0  # the next request's head timer starts at its first byte
        super().on_message_complete()

    # -- timers ---------------------------------------------------------------------------------------
    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()  # type: ignore[union-attr]
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._in_head:
            self._refuse(408, "Request Timeout", "request timeout",
                         f"the request headers did not arrive within {self.limits.header_timeout:g} s")
            return
        if self.flow.read_paused:  # the service is not reading: the client is not the slow one
            self._arm(1.0)
            return
        allowed = self.limits.body_timeout + self._body_bytes / self.limits.body_min_rate
        left = self._body_started + allowed - time.monotonic()
        if left > 0:
            self._arm(left)
            return
        log.warning("request body too slow: %d bytes in %.0f s; connection closed", self._body_bytes,
                    time.monotonic() - self._body_started)
        answered = self.cycle is None or self.cycle.response_started
        if self.cycle is not None:  # the app reads a disconnect, and whatever it sends goes nowhere
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if not answered:
            self.transport.write(_response(408, "Request Timeout", "request timeout",
                                           f"the request body came slower than {self.limits.body_min_rate:g} "
                                           f"bytes/s after {self.limits.body_timeout:g} s"))
        self.transport.close()

    def _refuse(self, status: int, reason: str, error: str, detail: str) -> None:
        log.warning("%s: %s", error, detail)
        self._disarm()
        self.transport.write(_response(status, reason, error, detail))
        self.transport.close()


def guarded_protocol(limits: HttpLimits) -> type[GuardedHttpToolsProtocol]:
    """uvicorn's httptools protocol under these limits (pass to `uvicorn.run(http=...)`)."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
