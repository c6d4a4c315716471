"""Perception end to end, with real processes: `quelle serve` following a folder (QUELLE_WATCH) with signed
webhooks, a git checkout fed by a local bare repository, and the Slack listener posting to a fake chat Web API;
a scripted language model over HTTP records every prompt. Deletes through the watcher, a webhook and
`quelle ingest --sync` leave search, answers, citations and conversation recall."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chat_server import FakeChat
from tests.conftest import ROOT
from tests.llm_server import ScriptedLLM
from tests.service.test_e2e import free_port, running

pytestmark = pytest.mark.integration

SECRET = "webhook-secret-for-tests"
SLACK_SECRET = "slack-signing-secret"
HR_USER = "UHR0001"


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "user.name=Tester", "-c", "user.email=tester@example.com",
                          "-c", "init.defaultBranch=main", *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


@dataclass
class World:
    base: str
    root: Path
    watched: Path
    hooked: Path
    batch: Path
    author: Path
    data: Path
    llm: ScriptedLLM
    chat: FakeChat
    admin: dict[str, str]
    bob: dict[str, str]
    env: dict[str, str]

    def search(self, query: str, headers: dict[str, str] | None = None) -> list[str]:
        r = httpx.post(f"{self.base}/v1/search", json={"query": query, "top_k": 10}, headers=headers or self.admin,
                       timeout=30)
        assert r.status_code == 200, r.text
        return [Path(h["source"]).name for h in r.json()["results"]]

    def ask(self, question: str, session: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"question": question} | ({"session_id": session} if session else {})
        r = httpx.post(f"{self.base}/v1/ask", json=body, headers=self.admin, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def hook(self, payload: dict[str, Any] | bytes, signature: str | None = None, path: str = "ingest",
             **headers: str) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sig = signature or "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        name = "X-Hub-Signature-256" if path == "github" else "X-Quelle-Signature"
        return httpx.post(f"{self.base}/v1/hooks/{path}", content=body, timeout=30,
                          headers={name: sig, "Content-Type": "application/json", **headers})

    def job(self, response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 202, response.text
        url = f"{self.base}{response.json()['status_url']}"
        return until(lambda: (j := httpx.get(url, headers=self.admin).json())["status"] in ("done", "failed") and j)


def until(what: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Any:
    root = tmp_path_factory.mktemp("perception")
    watched, hooked, batch = root / "watched", root / "hooked", root / "batch"
    (watched / "hr").mkdir(parents=True)
    hooked.mkdir()
    batch.mkdir()
    (watched / "leave.md").write_text("# Parental leave\n\nParental leave lasts 20 weeks at full pay.\n")
    (watched / "parking.md").write_text("# Parking\n\nVisitors park on level -2 after 9:00.\n")
    (watched / "hr" / "salaries.md").write_text("# Salary bands\n\nThe salary band for engineers is 70,000 to "
                                                "95,000 euros a year.\n")
    (batch / "canteen.md").write_text("# Canteen\n\nThe canteen serves lunch from 11:30 to 14:00.\n")
    remote, author, checkout = root / "remote.git", root / "author", root / "checkout"
    git(root, "init", "--bare", str(remote))
    git(root, "clone", str(remote), str(author))
    (author / "guide.md").write_text("# Style guide\n\nHeadings use sentence case in the style guide.\n")
    (author / "glossary.md").write_text("# Glossary\n\nA widget is a small reusable part of the interface.\n")
    git(author, "add", ".")
    git(author, "commit", "-m", "first")
    git(author, "push", "origin", "HEAD:main")
    git(root, "clone", str(remote), str(checkout))
    data = root / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QUELLE_EMBEDDING_MODEL": "all-MiniLM-L6-v2"}

    def key(name: str, groups: str) -> dict[str, str]:
        made = subprocess.run([sys.executable, "-m", "cli.main", "keys", "create", "--name", name, "--groups",
                               groups, "--data-dir", str(data)], capture_output=True, text=True, env=env, cwd=ROOT)
        assert made.returncode == 0, made.stderr
        return {"Authorization": f"Bearer {made.stdout.strip()}"}

    admin, bob = key("root", "admin"), key("bob", "eng")
    llm = ScriptedLLM(default="The documents say so [1].")
    chat = FakeChat()
    settings = {
        "QUELLE_EMBEDDING_MODEL": "all-MiniLM-L6-v2", "QUELLE_WATCH": json.dumps([str(watched)]),
        "QUELLE_WATCH_SETTLE": "0.5", "QUELLE_WATCH_ROOTS": json.dumps([str(watched), str(hooked)]),
        "QUELLE_WEBHOOK_SECRET": SECRET,
        "QUELLE_GIT_CHECKOUTS": json.dumps([{"repository": "acme/handbook", "path": str(checkout)}]),
        "QUELLE_ACL_RULES": json.dumps([{"path": "*/hr/*", "acl": ["group:hr"]}]),
        "QUELLE_SLACK_SIGNING_SECRET": SLACK_SECRET, "QUELLE_SLACK_BOT_TOKEN": "xoxb-test-token",
        "QUELLE_SLACK_API_URL": chat.api_url, "QUELLE_SLACK_USERS": json.dumps({HR_USER: ["user:hanna", "group:hr"]}),
        "QUELLE_LLM_BASE_URL": llm.base_url, "QUELLE_LLM_MODEL": "scripted", "QUELLE_LLM_API_KEY": "k",
        "QUELLE_AGENT": "false", "QUELLE_RATE_LIMIT": "0"}
    settings.pop("QUELLE_WATCH")  # the folder is given as `quelle serve --watch`
    port = free_port()
    cmd = [sys.executable, "-m", "cli.main", "serve", "--data-dir", str(data), "--port", str(port), "--watch",
           str(watched)]
    try:
        with running(cmd, f"http://127.0.0.1:{port}/readyz", {**env, **settings}, root / "serve.log"):
            w = World(f"http://127.0.0.1:{port}", root, watched, hooked, batch, author, data, llm, chat, admin, bob,
                      {**env, **settings})
            until(lambda: {"leave.md", "parking.md", "salaries.md"} <= set(w.search("leave parking salary")))
            yield w
    finally:
        llm.close()
        chat.close()


def test_a_file_deleted_in_a_watched_folder_leaves_search_answers_citations_and_recall(world):
    w = world
    first = w.ask("What is the parental leave policy?")
    session = first["session_id"]
    leave_id = next(c["document_id"] for c in first["citations"] if c["source"].endswith("leave.md"))
    w.ask("Where do visitors park?", session)
    assert httpx.get(f"{w.base}/v1/documents/{leave_id}", headers=w.admin).status_code == 200

    started = time.monotonic()
    (w.watched / "leave.md").unlink()
    until(lambda: "leave.md" not in w.search("parental leave weeks"))
    lag = time.monotonic() - started
    assert lag < 10, lag  # "within a few seconds"
    assert httpx.get(f"{w.base}/v1/documents/{leave_id}", headers=w.admin).status_code == 404
    seen = len(w.llm.requests)
    third = w.ask("How long is parental leave, and what about parking?", session)
    assert all(not c["source"].endswith("leave.md") for c in third["citations"])
    prompts = json.dumps([r["body"] for r in w.llm.requests[seen:]])
    assert "Where do visitors park?" in prompts  # the conversation goes on...
    assert "What is the parental leave policy?" not in prompts  # ...without the turn drawn from the deleted file
    assert "20 weeks" not in prompts


def test_signed_webhooks_add_and_remove_and_refuse_what_they_must(world):
    w = world
    visitors = w.hooked / "visitors.md"
    visitors.write_text("# Visitors\n\nVisitors sign in at the blue reception desk.\n")
    job = w.job(w.hook({"timestamp": time.time(), "changed": [str(visitors)]}))
    assert job["status"] == "done" and job["report"]["added"] == 1, job
    assert "visitors.md" in w.search("where do visitors sign in")

    visitors.unlink()
    job = w.job(w.hook({"timestamp": time.time(), "deleted": [str(visitors)]}))
    assert job["status"] == "done" and job["report"]["removed"] == 1, job
    assert "visitors.md" not in w.search("where do visitors sign in")
    answer = w.ask("Where do visitors sign in?")
    assert all(not c["source"].endswith("visitors.md") for c in answer["citations"])

    good = json.dumps({"timestamp": time.time(), "changed": [str(w.hooked)]}).encode()
    assert w.hook(good).status_code == 202
    replay = w.hook(good)
    assert replay.status_code == 401 and "replay" in replay.json()["detail"]
    wrong = w.hook(good, signature="sha256=" + "0" * 64)
    assert wrong.status_code == 401 and "X-Quelle-Signature" in wrong.json()["detail"]
    missing = httpx.post(f"{w.base}/v1/hooks/ingest", content=good, headers={"Content-Type": "application/json"})
    assert missing.status_code == 401
    stale = w.hook({"timestamp": time.time() - 3600, "changed": [str(w.hooked)]})
    assert stale.status_code == 401 and "timestamp" in stale.json()["detail"]
    outside = w.hook({"timestamp": time.time(), "changed": ["/etc/passwd"]})
    assert outside.status_code == 403 and "/etc/passwd" in outside.json()["detail"]
    escape = w.hook({"timestamp": time.time(), "deleted": [str(w.hooked / ".." / "data")]})
    assert escape.status_code == 403
    relative = w.hook({"timestamp": time.time(), "changed": ["docs/a.md"]})
    assert relative.status_code == 400 and "absolute" in relative.json()["detail"]
    assert w.hook(b"{not json").status_code == 400
    assert w.hook({"timestamp": time.time()}).status_code == 400

    assert httpx.get(f"{w.base}/v1/hooks/status", headers=w.bob).status_code == 403
    status = httpx.get(f"{w.base}/v1/hooks/status", headers=w.admin).json()
    assert status["watch"]["synced"] and status["watch"]["roots"] == [str(w.watched.resolve())]
    assert len(status["jobs"]) >= 3
    metrics = httpx.get(f"{w.base}/metrics").text
    assert 'quelle_sync_events_total{source="hook"}' in metrics
    assert 'quelle_sync_lag_seconds_count{source="watch"}' in metrics


def test_a_push_updates_the_checkout_and_the_index(world):
    w = world
    push = {"ref": "refs/heads/main", "repository": {"full_name": "acme/handbook"}}
    ping = w.hook({"zen": "hi"}, path="github", **{"X-GitHub-Event": "ping"})
    assert ping.status_code == 200
    job = w.job(w.hook(push, path="github", **{"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"}))
    assert job["status"] == "done", job  # the first push: the checkout's files were never ingested
    assert {"guide.md", "glossary.md"} <= set(w.search("style guide headings widget glossary"))

    git(w.author, "mv", "guide.md", "style.md")
    git(w.author, "rm", "-q", "glossary.md")
    (w.author / "release.md").write_text("# Releases\n\nReleases ship every second Tuesday.\n")
    git(w.author, "add", ".")
    git(w.author, "commit", "-m", "second")
    git(w.author, "push", "origin", "HEAD:main")
    job = w.job(w.hook(push, path="github", **{"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-2"}))
    assert job["status"] == "done" and len(job["commits"]) == 2 and job["commits"][0] != job["commits"][1], job
    found = w.search("style guide headings widget glossary releases Tuesday")
    assert {"style.md", "release.md"} <= set(found) and not {"guide.md", "glossary.md"} & set(found)

    again = w.hook(push, path="github", **{"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-2"})
    assert again.status_code == 401 and "d-2" in again.json()["detail"]
    wrong = w.hook(push, signature="sha256=" + "1" * 64, path="github", **{"X-GitHub-Event": "push"})
    assert wrong.status_code == 401 and "X-Hub-Signature-256" in wrong.json()["detail"]
    other = w.hook({"repository": {"full_name": "evil/repo"}}, path="github",
                   **{"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-3"})
    assert other.status_code == 403


def test_ingest_sync_removes_a_deleted_file_from_the_running_service(world):
    w = world

    def ingest(*flags: str) -> None:
        def once() -> bool:
            run = subprocess.run([sys.executable, "-m", "cli.main", "ingest", str(w.batch), "--data-dir", str(w.data),
                                  *flags], capture_output=True, text=True, env=w.env, cwd=ROOT, timeout=300)
            assert run.returncode in (0, 5), run.stderr  # 5: the watcher was writing: try again
            return run.returncode == 0
        until(once, timeout=120)

    ingest()
    assert "canteen.md" in w.search("when does the canteen serve lunch")
    (w.batch / "canteen.md").unlink()
    ingest("--sync")
    assert "canteen.md" not in w.search("when does the canteen serve lunch")
    answer = w.ask("When does the canteen serve lunch?")
    assert all(not c["source"].endswith("canteen.md") for c in answer["citations"])


def slack_event(w: World, event: dict[str, Any], event_id: str, *, secret: str = SLACK_SECRET) -> httpx.Response:
    body = json.dumps({"type": "event_callback", "event_id": event_id, "event": event}).encode()
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return httpx.post(f"{w.base}/v1/chat/slack/events", content=body, timeout=30,
                      headers={"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig,
                               "Content-Type": "application/json"})


def test_the_chat_listener_answers_in_the_thread_from_what_the_user_may_read(world):
    w = world
    body = json.dumps({"type": "url_verification", "challenge": "c-123"}).encode()
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(SLACK_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    r = httpx.post(f"{w.base}/v1/chat/slack/events", content=body,
                   headers={"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig})
    assert r.status_code == 200 and r.json() == {"challenge": "c-123"}
    assert slack_event(w, {"type": "app_mention"}, "e-0", secret="wrong").status_code == 401

    question = "<@UBOT> What is the salary band for engineers?"
    seen = len(w.llm.requests)
    assert slack_event(w, {"type": "app_mention", "user": "USTRANGER", "text": question, "channel": "C1",
                           "ts": "100.1"}, "e-1").status_code == 200
    stranger = w.chat.wait(1)[-1]
    assert stranger["channel"] == "C1" and stranger["thread_ts"] == "100.1"
    assert stranger["authorization"] == "Bearer xoxb-test-token"
    assert "Salary bands" not in stranger["text"]  # an unknown user reads public documents only
    assert "70,000" not in json.dumps([r["body"] for r in w.llm.requests[seen:]])  # nor does the model see it

    assert slack_event(w, {"type": "app_mention", "user": HR_USER, "text": question, "channel": "C1",
                           "ts": "101.1", "thread_ts": "100.1"}, "e-2").status_code == 200
    hr = w.chat.wait(2)[-1]
    assert hr["thread_ts"] == "100.1" and "Salary bands" in hr["text"] and "/?doc=" in hr["text"]

    # a direct message is answered; the same event sent again is answered once; bots and edits never
    assert slack_event(w, {"type": "message", "channel_type": "im", "user": "USTRANGER", "channel": "D9",
                           "text": "Where do visitors park?", "ts": "200.1"}, "e-3").status_code == 200
    assert slack_event(w, {"type": "message", "channel_type": "im", "user": "USTRANGER", "channel": "D9",
                           "text": "Where do visitors park?", "ts": "200.1"}, "e-3").status_code == 200
    for n, event in enumerate([{"type": "message", "channel_type": "im", "bot_id": "B1", "channel": "D9",
                                "text": "The documents say so", "ts": "201.1"},
                               {"type": "message", "channel_type": "im", "subtype": "message_changed",
                                "channel": "D9", "ts": "202.1"}]):
        assert slack_event(w, event, f"e-bot-{n}").status_code == 200
    dm = w.chat.wait(3)[-1]
    assert dm["channel"] == "D9" and dm["thread_ts"] == "200.1" and "Parking" in dm["text"]
    time.sleep(2)
    assert len(w.chat.posts) == 3
    metrics = httpx.get(f"{w.base}/metrics").text
    assert 'quelle_chat_events_total{kind="duplicate"} 1.0' in metrics
    assert 'quelle_chat_events_total{kind="ignored"} 2.0' in metrics
