"""Perception in the service: signed webhooks and the folders it watches, applied by one background worker.

A webhook names changed and deleted paths (`POST /v1/hooks/ingest`) or reports a push to a repository whose
checkout Quelle keeps (`POST /v1/hooks/github`); it is answered 202 at once with a job id, and the job runs on
the worker: the same ingestion as `quelle ingest` (wired by the CLI as a `Perception`, so `service` never
imports `ingest`). Jobs, the watcher's state and their metrics are visible to administrators
(`GET /v1/hooks/status`, `GET /v1/hooks/jobs/{id}`, `/metrics`).

Signatures: `X-Quelle-Signature: sha256=<hex>` is HMAC-SHA256 of the raw body under QUELLE_WEBHOOK_SECRET; the
body's `timestamp` (Unix seconds) must be within QUELLE_WEBHOOK_TOLERANCE of now, and a signature is accepted
once (a replay inside the window is refused). GitHub signs with `X-Hub-Signature-256` (same scheme, no
timestamp): a delivery id (`X-GitHub-Delivery`) is accepted once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from index.errors import QuelleError
from service.metrics import Metrics

log = logging.getLogger("quelle.hooks")


class Perception(Protocol):
    """What the CLI wires in (cli/indexer.py): ingestion of changes, git checkouts, the folder watcher."""

    def apply(self, changed: Sequence[Path], deleted: Sequence[Path]) -> Any:
        """One ingestion run; returns its IngestReport (summary(), failed, failures, added...)."""
        ...

    def pull(self, checkout: Path) -> tuple[list[Path], list[Path], str, str]:
        """git fetch + move to the upstream: (changed, deleted, old commit, new commit)."""
        ...

    def watcher(self, roots: Sequence[Path], observer: Any) -> Any:
        """A watcher of `roots` (ingest/watch.py): run(stop_event), status."""
        ...


class HookRefused(QuelleError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body` (for senders and tests)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Replays:
    """Values seen in the last `window` seconds (signatures, delivery ids), bounded in number."""

    def __init__(self, window: float, most: int = 10_000) -> None:
        self.window = window
        self.most = most
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, value: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now - self.window or len(self._seen) > self.most):
                self._seen.popitem(last=False)
            if value in self._seen:
                return False
            self._seen[value] = now
            return True


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object; HookRefused (400) saying what it is instead."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HookRefused(400, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HookRefused(400, "the body must be a JSON object")
    return data


def check_signature(secret: str, body: bytes, header: str | None, name: str) -> None:
    if not header:
        raise HookRefused(401, f"missing {name}: sign the raw body with HMAC-SHA256 (sha256=<hex>)")
    if not hmac.compare_digest(header.strip().lower(), sign(secret, body)):
        raise HookRefused(401, f"{name} does not match the body (HMAC-SHA256 of the raw body with the shared "
                               "secret, as sha256=<hex>)")


def check_timestamp(timestamp: Any, tolerance: float, now: float | None = None) -> None:
    now = time.time() if now is None else now
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise HookRefused(400, "'timestamp' (Unix seconds, a number) is required in the body")
    if abs(now - float(timestamp)) > tolerance:
        raise HookRefused(401, f"'timestamp' is {now - float(timestamp):+.0f} s from now: over the {tolerance:g} s "
                               "allowed (a delayed or replayed request, or a clock to set)")


def under_roots(paths: Sequence[Any], roots: Sequence[Path], field_name: str) -> list[Path]:
    """The paths, resolved; HookRefused naming the first that is not an absolute path under one of `roots`."""
    if not roots:
        raise HookRefused(403, "no folders are open to webhooks: set QUELLE_WATCH_ROOTS (or QUELLE_WATCH)")
    resolved_roots = [r.resolve() for r in roots]
    out = []
    for i, raw in enumerate(paths):
        if not isinstance(raw, str) or not raw or "\0" in raw:
            raise HookRefused(400, f"{field_name}[{i}]: a path (a non-empty string) is required")
        path = Path(raw)
        if not path.is_absolute():
            raise HookRefused(400, f"{field_name}[{i}] {raw!r}: use an absolute path")
        real = path.resolve()
        if not any(real == r or r in real.parents for r in resolved_roots):
            raise HookRefused(403, f"{field_name}[{i}] {raw!r} is outside the folders open to webhooks "
                                   "(QUELLE_WATCH_ROOTS)")
        out.append(real)
    return out


@dataclass
class Job:
    id: str
    source: str  # "hook" or "git"
    changed: list[str]
    deleted: list[str]
    received: float
    checkout: str | None = None
    status: str = "queued"  # queued, running, done, failed
    started: float | None = None
    finished: float | None = None
    commits: list[str] = field(default_factory=list)  # git: [old, new]
    report: dict[str, Any] | None = None
    error: str | None = None

    def out(self) -> dict[str, Any]:
        return asdict(self)


class SyncJobs:
    """Webhook jobs, run one after another on a worker thread; the last `keep` are remembered."""

    def __init__(self, perception: Perception, observer: Metrics, *, tolerance: float = 300.0,
                 keep: int = 200) -> None:
        self.perception = perception
        # signatures (inside the timestamp window) and GitHub delivery ids accepted once
        self.seen = {"quelle": Replays(2 * tolerance), "github": Replays(86400)}
        self.observer = observer
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="quelle-hooks", daemon=True)
        self._thread.start()

    def submit(self, source: str, changed: Sequence[Path], deleted: Sequence[Path],
               checkout: Path | None = None) -> Job:
        job = Job(uuid.uuid4().hex[:16], source, [str(p) for p in changed], [str(p) for p in deleted], time.time(),
                  str(checkout) if checkout else None)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                self._jobs.popitem(last=False)
        self.observer.received(source, max(1, len(changed) + len(deleted)))
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self, n: int = 50) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())[-n:][::-1]

    def queued(self) -> int:
        return self._queue.qsize()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job.status, job.started = "running", time.time()
            try:
                changed, deleted = [Path(p) for p in job.changed], [Path(p) for p in job.deleted]
                if job.checkout:
                    checkout = Path(job.checkout)
                    pulled, gone, old, new = self.perception.pull(checkout)
                    job.commits = [old, new]
                    job.changed, job.deleted = [str(p) for p in pulled], [str(p) for p in gone]
                    # the whole checkout, synced: what the push changed (unchanged files are skipped by their
                    # size and time), and whatever an earlier run missed (a checkout never ingested before)
                    changed, deleted = [checkout], [checkout]
                report = self.perception.apply(changed, deleted)
            except Exception as exc:  # reported on the job and in the metrics; the worker goes on
                log.warning("webhook job %s failed: %s", job.id, exc)
                job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
                self.observer.failed(job.source, 1)
            else:
                job.status = "done"
                job.report = {k: getattr(report, k) for k in (
                    "added", "updated", "unchanged", "removed", "failed", "chunks_written", "generation")}
                job.report["failures"] = [f.__dict__ for f in report.failures[:20]]
                done = time.time()
                self.observer.applied(job.source, [done - job.received] * max(1, len(job.changed) + len(job.deleted)))
                if report.failed:
                    self.observer.failed(job.source, report.failed)
            job.finished = time.time()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
