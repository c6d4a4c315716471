"""Perception: the index follows folders (`quelle watch PATH...`, `quelle serve --watch PATH...`).

On start, one catch-up run (the same as `quelle ingest PATH... --sync`: whatever changed while nobody watched is
ingested, what was deleted leaves the index). Then the folders are watched with `watchfiles` (inotify through
the Rust `notify` crate where the kernel has it; polling with `polling=True`, for network file systems), and
each change is applied once the file has settled: its size and modification time unchanged for `settle`
seconds, so a file still being written is never ingested half-way. Everything that settled by then is applied
in one run of the ordinary pipeline (so a burst of 10,000 files is a few commits, not 10,000); deleted and
renamed-away files and folders leave the index in the same run. A failed run (another process writing the
index, a full disk) is retried with a growing pause; nothing pending is dropped.

A watcher killed at any moment leaves the index at its last commit (ingestion's own guarantee); the next start's
catch-up run completes the work without duplicates.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ingest.discover import ignored
from ingest.parsers import supported
from ingest.report import IngestReport

log = logging.getLogger(__name__)

Apply = Callable[[Sequence[Path], Sequence[Path]], IngestReport]  # (changed or new paths, deleted paths)


class SyncObserver(Protocol):
    """Where the watcher reports what it sees and does (the service's metrics)."""

    def received(self, source: str, n: int) -> None: ...

    def applied(self, source: str, lags: Sequence[float]) -> None:
        """Changes now searchable, and for each the seconds from the change to its commit."""
        ...

    def failed(self, source: str, n: int) -> None: ...

    def pending(self, source: str, n: int) -> None: ...


class NoObserver:
    def received(self, source: str, n: int) -> None:
        pass

    def applied(self, source: str, lags: Sequence[float]) -> None:
        pass

    def failed(self, source: str, n: int) -> None:
        pass

    def pending(self, source: str, n: int) -> None:
        pass


def watched(path: Path) -> bool:
    """Whether a changed path matters: not hidden, not an editor's or office suite's temporary file, and a folder
    or a file type Quelle reads. (A deleted path cannot be told apart from a folder: every one matters.)"""
    if ignored(path.name):
        return False
    return path.is_dir() or supported(path)


@dataclass
class _Change:
    deleted: bool
    noticed: float  # wall time the change was first seen
    signature: tuple[int, int, int] | None = None  # (size, mtime_ns, ctime_ns) at the last look
    stable_since: float = 0.0  # monotonic time the signature was last seen to change
    since: float = 0.0  # monotonic time it was first seen


@dataclass
class WatchStatus:
    roots: list[str]
    started: float
    synced: bool = False  # the catch-up run is done
    pending: int = 0
    batches: int = 0
    changes_applied: int = 0
    files_failed: int = 0
    runs_failed: int = 0
    last_batch: float | None = None  # wall time
    last_error: str | None = None
    last_report: dict[str, Any] | None = None


class Watcher:
    HOLD = 10  # settle times a deletion may wait for the changes around it

    def __init__(self, roots: Sequence[Path], apply: Apply, *, settle: float = 1.0, polling: bool | None = None,
                 observer: SyncObserver | None = None, source: str = "watch") -> None:
        missing = [str(r) for r in roots if not r.is_dir()]
        if missing:
            raise ValueError(f"not a folder: {', '.join(missing)}")
        self.roots = [r.resolve() for r in roots]
        self.apply = apply
        self.settle = settle
        self.polling = polling
        self.observer = observer or NoObserver()
        self.source = source
        self.status = WatchStatus([str(r) for r in self.roots], time.time())
        self._pending: dict[Path, _Change] = {}
        self._retry_at = 0.0
        self._backoff = 1.0

    def run(self, stop: threading.Event) -> None:
        """Catch up, then follow the folders until `stop` is set."""
        import watchfiles

        while not stop.is_set() and not self._catch_up():
            stop.wait(self._backoff)
        for changes in watchfiles.watch(
                *self.roots, watch_filter=lambda _c, p: watched(Path(p)) or not os.path.exists(p),
                debounce=int(self.settle * 1000), step=50, stop_event=stop, yield_on_timeout=True,
                rust_timeout=max(100, int(self.settle * 500)), force_polling=self.polling,
                poll_delay_ms=300, raise_interrupt=False, ignore_permission_denied=True):
            self.notice((Path(p), change == watchfiles.Change.deleted) for change, p in changes)
            self.flush()

    def _catch_up(self) -> bool:
        try:
            report = self.apply(self.roots, self.roots)
        except Exception as exc:  # e.g. another process is writing the index: try again shortly
            self._failed_run(exc)
            return False
        self._done(report, [])
        self.status.synced = True
        log.info("watching %s: caught up (%s)", ", ".join(self.status.roots), report.summary().splitlines()[0])
        return True

    def notice(self, changes: Iterable[tuple[Path, bool]]) -> None:
        """Record changes: (path, deleted). A changed folder stands for the files in it (each settles alone)."""
        now, mono, n = time.time(), time.monotonic(), 0
        for path, deleted in changes:
            n += 1
            if not deleted and path.is_dir():
                for root, dirs, files in os.walk(path):
                    dirs[:] = [d for d in dirs if not d.startswith(".")]
                    for name in files:
                        if watched(Path(root) / name):
                            self._pending.setdefault(Path(root) / name, _Change(False, now, since=mono))
                continue
            old = self._pending.get(path)
            if old is None or old.deleted != deleted:
                self._pending[path] = _Change(deleted, old.noticed if old else now,
                                              since=old.since if old else mono)
        if n:
            self.observer.received(self.source, n)
        self.status.pending = len(self._pending)
        self.observer.pending(self.source, len(self._pending))

    def flush(self) -> None:
        """Apply the changes that have settled, in one run."""
        if not self._pending or time.monotonic() < self._retry_at:
            return
        changed, deleted = self._settled()
        if not changed and not deleted:
            return
        try:
            report = self.apply(changed, deleted)
        except Exception as exc:
            self._failed_run(exc)
            return
        batch = changed + deleted
        done = time.time()
        lags = []
        for path in batch:
            change = self._pending.pop(path)
            start = change.noticed
            if not change.deleted and change.signature is not None:
                # when the file changed: written (mtime) or moved here (ctime), if before it was noticed
                start = min(start, max(change.signature[1], change.signature[2]) / 1e9)
            lags.append(max(0.0, done - start))
        self._done(report, lags)
        log.info("applied %d changes (%s)", len(batch), report.summary().splitlines()[0])

    def _settled(self) -> tuple[list[Path], list[Path]]:
        """The changed files that have settled, and the deletions to apply with them. Deletions wait until the
        changes around them have settled too (up to `HOLD` settle times), so that a renamed or replaced file is
        removed and added in one run (its chunks' vectors are reused, and it is never missing in between)."""
        now, wall = time.monotonic(), time.time()
        changed: list[Path] = []
        deleted: list[Path] = []
        unsettled = False
        for path, change in list(self._pending.items()):
            if change.deleted:
                if os.path.lexists(path):  # deleted, then created again: a change now
                    self._pending[path] = _Change(False, change.noticed, since=change.since)
                    unsettled = True
                elif now - change.since >= self.settle:
                    deleted.append(path)
                continue
            try:
                st = path.stat()
            except OSError:  # gone before it settled
                self._pending[path] = _Change(True, change.noticed, since=change.since)
                continue
            signature = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if signature != change.signature:
                change.signature, change.stable_since = signature, now
                unsettled = True
                continue
            if now - change.stable_since >= self.settle and wall - st.st_mtime >= self.settle:
                changed.append(path)
            else:
                unsettled = True
        if unsettled:
            deleted = [p for p in deleted if now - self._pending[p].since >= self.HOLD * max(self.settle, 0.2)]
        return changed, deleted

    def _done(self, report: IngestReport, lags: list[float]) -> None:
        self._backoff = 1.0
        self.status.batches += 1
        self.status.changes_applied += len(lags)
        self.status.files_failed += report.failed
        self.status.last_batch = time.time()
        self.status.last_report = {k: getattr(report, k) for k in (
            "added", "updated", "unchanged", "removed", "failed", "relabelled", "chunks_written", "generation")}
        self.status.last_report["failures"] = [f.__dict__ for f in report.failures[:20]]
        self.status.pending = len(self._pending)
        self.observer.pending(self.source, len(self._pending))
        if lags:
            self.observer.applied(self.source, lags)
        if report.failed:
            self.observer.failed(self.source, report.failed)
            for f in report.failures:
                log.warning("%s: %s", f.path, f.reason)

    def _failed_run(self, exc: Exception) -> None:
        self.status.runs_failed += 1
        self.status.last_error = f"{type(exc).__name__}: {exc}"
        self.observer.failed(self.source, 1)
        log.warning("could not apply changes (%s); trying again in %.0f s", exc, self._backoff)
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(60.0, self._backoff * 2)
