"""The HTTP server's bounds (service/http.py) on a real uvicorn server over real sockets: header size and count
(431), and clients too slow to send their headers or body (408, connection closed)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from service.http import HttpLimits, guarded_protocol


async def echo(scope, receive, send) -> None:
    """Reads the whole body and answers its length."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def server(limits: HttpLimits) -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    srv = uvicorn.Server(uvicorn.Config(echo, host="127.0.0.1", port=port, http=guarded_protocol(limits),
                                        log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not srv.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        yield port
    finally:
        srv.should_exit = True
        thread.join(10)


LIMITS = HttpLimits(max_header_bytes=8192, max_headers=20, header_timeout=1.0, body_timeout=1.0, body_min_rate=500)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with server(LIMITS) as p:
        yield p


def raw(port: int, *parts: bytes, pause: float = 0.0, timeout: float = 10.0) -> tuple[bytes, float]:
    """Sends the parts (pausing between them) and reads until the server closes: (what came back, seconds)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            for part in parts:
                s.sendall(part)
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
    return got, time.monotonic() - started


def test_an_oversized_header_is_a_431_and_others_are_served_meanwhile(port):
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000_000 + b"\r\n\r\n"
    result: dict[str, tuple[bytes, float]] = {}
    sender = threading.Thread(target=lambda: result.update(big=raw(port, huge)))
    sender.start()
    ok = [httpx.get(f"http://127.0.0.1:{port}/", timeout=5) for _ in range(5)]
    sender.join(30)
    got, took = result["big"]
    assert got.startswith(b"HTTP/1.1 431 ") and b"at most 8192 bytes" in got
    assert took < 5 and all(r.status_code == 200 for r in ok)


def test_too_many_headers_is_a_431(port):
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(30)) + b"\r\n"
    got, _ = raw(port, head)
    assert got.startswith(b"HTTP/1.1 431 ") and b"at most 20 headers" in got
    fine = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(15)) + b"\r\n"
    got, _ = raw(port, fine + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got.count(b"HTTP/1.1 200 ") == 2


def test_a_silent_or_trickling_client_is_dropped_with_a_408(port):
    got, took = raw(port)  # connects and sends nothing
    assert got.startswith(b"HTTP/1.1 408 ") and 0.8 < took < 4
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 40 + b"\r\n\r\n"
    got, took = raw(port, *[head[i:i + 1] for i in range(len(head))], pause=0.1)  # a byte every 0.1 s
    assert got.startswith(b"HTTP/1.1 408 ") and b"headers did not arrive" in got and took < 4


def test_a_trickled_body_is_dropped_and_a_steady_one_is_not(port):
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    got, took = raw(port, head, *[b"0123456789"] * 100, pause=0.1)  # 100 bytes/s
    assert got.startswith(b"HTTP/1.1 408 ") and b"request body" in got and took < 4
    big = httpx.post(f"http://127.0.0.1:{port}/", content=b"x" * 5_000_000, timeout=10)
    assert big.status_code == 200 and big.text == "5000000"


def test_a_kept_alive_connection_may_rest_between_requests(port):
    one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    got, took = raw(port, one, last, pause=1.5)  # idle longer than the header timeout, shorter than keep-alive
    assert got.count(b"HTTP/1.1 200 ") == 2 and took > 1.5
