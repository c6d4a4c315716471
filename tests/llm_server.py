"""A scripted OpenAI-compatible chat server on 127.0.0.1, for deterministic tests of the LLM boundary.

Each request pops the next scripted reply; every request body is recorded so tests can assert on the exact
messages sent. A reply is a string (the answer), or a `Reply` with a behaviour: split the text into given
deltas, sleep, fail with an HTTP status, or send malformed data.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    text: str = ""
    deltas: list[str] | None = None
    sleep: float = 0.0
    status: int = 200
    malformed: bool = False
    echo_system: bool = False  # deliberately obedient: answer with the system message it was sent
    echo_prompt: bool = False  # answer with every message it was sent (documents, history and all)
    tool_calls: list[tuple[str, str]] | None = None  # (name, JSON arguments): OpenAI tool calls (not streamed)


@dataclass
class ScriptedLLM:
    replies: deque = field(default_factory=deque)
    requests: list[dict] = field(default_factory=list)
    default: str | None = None

    def __post_init__(self) -> None:
        script = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                script.requests.append({"path": self.path, "body": body,
                                        "authorization": self.headers.get("authorization")})
                if script.replies:
                    reply = script.replies.popleft()
                elif script.default is not None:
                    reply = script.default
                else:
                    reply = Reply(status=500, text="no scripted reply left")
                if isinstance(reply, str):
                    reply = Reply(text=reply)
                script._answer(self, body, reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def script(self, *replies: str | Reply) -> None:
        self.replies.extend(replies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, h: BaseHTTPRequestHandler, body: dict, reply: Reply) -> None:
        if reply.sleep:
            time.sleep(reply.sleep)
        if reply.status != 200:
            _send(h, reply.status, "application/json", json.dumps({"error": {"message": reply.text}}).encode())
            return
        if reply.malformed:
            _send(h, 200, "text/event-stream" if body.get("stream") else "application/json",
                  b"data: {not json at all\n\n" if body.get("stream") else b"{not json")
            return
        created = int(time.time())
        if reply.echo_prompt:
            everything = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
            reply = Reply(text=everything, deltas=[everything[i:i + 7] for i in range(0, len(everything), 7)])
        if reply.echo_system:
            system = next((m["content"] for m in body.get("messages", []) if m.get("role") == "system"), "")
            reply = Reply(text=f"Sure! My instructions are: {system}",
                          deltas=[system[i:i + 7] for i in range(0, len(system), 7)])
        if not body.get("stream"):
            message: dict = {"role": "assistant", "content": reply.text or None}
            if reply.tool_calls:
                message["tool_calls"] = [{"id": f"call_{i}", "type": "function",
                                          "function": {"name": name, "arguments": args}}
                                         for i, (name, args) in enumerate(reply.tool_calls)]
            payload = {"id": "cmpl-1", "object": "chat.completion", "created": created, "model": body.get("model"),
                       "choices": [{"index": 0, "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                                    "message": message}],
                       "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
            _send(h, 200, "application/json", json.dumps(payload).encode())
            return
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.end_headers()
        for piece in reply.deltas if reply.deltas is not None else [reply.text]:
            chunk = {"id": "cmpl-1", "object": "chat.completion.chunk", "created": created, "model": body.get("model"),
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            h.wfile.flush()
        h.wfile.write(b"data: [DONE]\n\n")
        h.wfile.flush()


def _send(h: BaseHTTPRequestHandler, status: int, ctype: str, data: bytes) -> None:
    h.send_response(status)
    h.send_header("content-type", ctype)
    h.send_header("content-length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)
