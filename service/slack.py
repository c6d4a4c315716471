"""Listening where people talk: a Slack app (Events API) that answers mentions and direct messages in their
thread, with the answer's sources, from the documents the asking user may read.

Slack signs each request: `X-Slack-Signature: v0=<hex>` is HMAC-SHA256 of `v0:<X-Slack-Request-Timestamp>:<raw
body>` under the app's signing secret; the timestamp must be within five minutes. `url_verification` is answered
with its challenge. Events are acknowledged at once (Slack retries what is not acknowledged within 3 s) and
answered on a worker; an event Slack sends again (`event_id`) is answered once. Bots' own messages, edits and
other subtypes are ignored, so the app never answers itself.

Who may read what: QUELLE_SLACK_USERS maps a Slack user id to access entries (`user:alice`, `group:hr`); a user
not in it reads public documents only. Each thread is one conversation (memory as in /v1/ask), the Slack user's
own. Replies go through the Web API (`chat.postMessage` under QUELLE_SLACK_API_URL) with the bot token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from index.records import PUBLIC
from index.store import SearchFilter
from service.answering import answer
from service.hooks import HookRefused, Replays

log = logging.getLogger("quelle.slack")

MENTION = re.compile(r"<@[A-Z0-9]+>")
TOLERANCE_S = 300


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, timestamp: str | None, signature: str | None, now: float | None = None) -> None:
    if not timestamp or not signature:
        raise HookRefused(401, "missing X-Slack-Request-Timestamp or X-Slack-Signature")
    try:
        age = (time.time() if now is None else now) - int(timestamp)
    except ValueError:
        raise HookRefused(401, "X-Slack-Request-Timestamp is not a number") from None
    if abs(age) > TOLERANCE_S:
        raise HookRefused(401, f"X-Slack-Request-Timestamp is {age:+.0f} s from now: over the {TOLERANCE_S} s allowed")
    if not hmac.compare_digest(signature.strip(), slack_signature(secret, timestamp, body)):
        raise HookRefused(401, "X-Slack-Signature does not match the request (the app's signing secret?)")


def access_of(entries: list[str] | None) -> frozenset[str]:
    """The access entries a chat user reads with: the configured ones and public; public alone if unknown."""
    return frozenset({PUBLIC, *(entries or [])})


def reply_text(got: Any, base_url: str) -> str:
    """The answer, then its sources: title, page, quote, and a link to the source view of the web page."""
    lines = [got.checked.answer]
    if got.checked.citations:
        lines += ["", "*Sources*"]
    for c in got.checked.citations:
        where = f", p. {c.page}" if c.page else ""
        quote = (c.quotes or (c.quote,))[0] if (c.quotes or c.quote) else ""
        link = f"{base_url.rstrip('/')}/?doc={c.document_id}&chunk={c.chunk_id}" + (f"&page={c.page}" if c.page else "")
        lines.append(f"<{link}|[{c.n}] {c.title}{where}>" + (f" — “{quote[:300]}”" if quote else ""))
    return "\n".join(lines)


class SlackListener:
    def __init__(self, svc: Any, *, signing_secret: str, bot_token: str | None, api_url: str,
                 users: dict[str, list[str]], workers: int = 2) -> None:
        self.svc = svc
        self.signing_secret = signing_secret
        self.bot_token = bot_token
        self.api_url = api_url.rstrip("/")
        self.users = users
        self.seen = Replays(3600)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="quelle-slack")

    def receive(self, data: dict[str, Any], base_url: str) -> dict[str, Any]:
        """A verified request's JSON: what to answer Slack with now (the reply follows on a worker)."""
        kind = data.get("type")
        metrics = self.svc.metrics
        if kind == "url_verification":
            metrics.chat_events.labels("url_verification").inc()
            return {"challenge": data.get("challenge", "")}
        event = data.get("event")
        if kind != "event_callback" or not isinstance(event, dict):
            metrics.chat_events.labels("ignored").inc()
            return {"ok": True}
        event_id = str(data.get("event_id") or f"{event.get('channel')}:{event.get('ts')}")
        if not self.seen.first_time(event_id):
            metrics.chat_events.labels("duplicate").inc()
            return {"ok": True}
        name = event.get("type")
        is_dm = name == "message" and event.get("channel_type") == "im"
        if event.get("bot_id") or event.get("subtype") or not (name == "app_mention" or is_dm):
            metrics.chat_events.labels("ignored").inc()
            return {"ok": True}
        metrics.chat_events.labels("direct_message" if is_dm else "mention").inc()
        self.pool.submit(self._answer, event, base_url)
        return {"ok": True}

    def _answer(self, event: dict[str, Any], base_url: str) -> None:
        user = str(event.get("user") or "")
        channel = str(event.get("channel") or "")
        thread = str(event.get("thread_ts") or event.get("ts") or "")
        question = MENTION.sub("", str(event.get("text") or "")).strip()
        try:
            if not question:
                text = "Ask me a question about the documents, e.g. “How long is parental leave?”"
            else:
                readable = access_of(self.users.get(user))
                answerer = self.svc.answerer("single")
                with answerer.hold():
                    plan = answerer.plan(question[:2000], f"{channel}:{thread}", None,
                                         SearchFilter(principals=readable), f"slack:{user}")
                    got = answer(answerer, plan)
                text = reply_text(got, base_url)
            self._post(channel, thread, text)
        except Exception as exc:  # a reply that cannot be made is counted and logged; the listener goes on
            self.svc.metrics.chat_failures.inc()
            log.warning("could not answer the chat message in %s: %s", channel, exc)

    def _post(self, channel: str, thread: str, text: str) -> None:
        data = json.dumps({"channel": channel, "thread_ts": thread, "text": text, "unfurl_links": False,
                           "unfurl_media": False}).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self.bot_token:
            headers["Authorization"] = f"Bearer {self.bot_token}"
        request = urllib.request.Request(f"{self.api_url}/chat.postMessage", data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 (the configured Web API)
                body = json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"chat.postMessage answered {exc.code}") from None
        if not body.get("ok"):
            raise RuntimeError(f"chat.postMessage answered {body.get('error', body)}")

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
