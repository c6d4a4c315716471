"""A fake team-chat Web API on 127.0.0.1 (Slack's `chat.postMessage` shape): records each posted message with
its bearer token, answers {"ok": true}. Tests read `posts` to see what Quelle replied, in which thread."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeChat:
    def __init__(self) -> None:
        self.posts: list[dict] = []
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                ok = self.path == "/api/chat.postMessage"
                if ok:
                    chat.posts.append({**body, "authorization": self.headers.get("authorization")})
                data = json.dumps({"ok": ok, "ts": f"{time.time():.6f}"} if ok else
                                  {"ok": False, "error": "unknown_method"}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def wait(self, n: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.posts) >= n, f"{len(self.posts)} messages posted, waited for {n}"
        return self.posts

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
