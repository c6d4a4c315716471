"""`quelle watch`: real watcher processes on real folders (inotify, and polling), the index read as the service
reads it. The bundled MiniLM model keeps the runs short."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from index.store import StoreConfig, open_store
from tests.conftest import ROOT, SAMPLES
from tests.service.test_e2e import free_port

pytestmark = pytest.mark.integration

ENV = {"QUELLE_EMBEDDING_MODEL": "all-MiniLM-L6-v2", "QUELLE_WATCH_SETTLE": "0.5", "QUELLE_LOG_LEVEL": "INFO"}


class Watch:
    """A `quelle watch` process, its log and its metrics."""

    def __init__(self, folder: Path, data_dir: Path, log: Path, *flags: str, **env: str) -> None:
        self.port = free_port()
        self.log = log
        with open(log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "watch", str(folder), "--data-dir", str(data_dir),
                 "--metrics-port", str(self.port), *flags],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **ENV, **env})

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        found = re.search(rf'^{name}{{source="watch"}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def index(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Documents by file name: content hash, chunk texts, access list; and the store's totals under ''."""
    try:
        store = open_store(StoreConfig(data_dir))
    except Exception:
        return {}
    try:
        out: dict[str, dict[str, Any]] = {}
        ids = []
        for doc in store.documents(0, 100_000)[0]:
            chunks = store.chunks_of(doc.id)
            ids += [c.id for c in chunks]
            out[Path(doc.source).name] = {"hash": doc.content_hash, "text": " ".join(c.text for c in chunks),
                                          "acl": doc.acl}
        stats = store.stats()
        out[""] = {"generation": store.generation, "chunks": stats.chunks, "unique_chunks": len(set(ids)),
                   "listed_chunks": len(ids)}
        return out
    finally:
        store.close()


def until(what: Callable[[], Any], proc: subprocess.Popen, log: Path, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        assert proc.poll() is None, log.read_text()[-4000:]
        time.sleep(0.2)
    raise AssertionError(f"timed out; log:\n{log.read_text()[-4000:]}")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def memo(i: int, extra: str = "") -> str:
    return f"# Memo {i}\n\nThe cafeteria menu for week {i} lists soup number {i * 7} and bread.{extra}\n"


def test_watch_follows_a_folder_and_survives_restarts_and_sigkill(tmp_path):
    docs, data = tmp_path / "docs", tmp_path / "data"
    docs.mkdir()
    shutil.copy(SAMPLES / "onboarding.md", docs / "onboarding.md")
    (docs / "parking.md").write_text("# Parking\n\nVisitors park on level -2 after 9:00.\n")
    log = tmp_path / "watch.log"
    acl = ("--acl", "group:staff")
    w = Watch(docs, data, log, *acl)
    try:
        until(lambda: {"onboarding.md", "parking.md"} <= set(index(data)), w.proc, log)  # the catch-up run
        assert index(data)["parking.md"]["acl"] == ("group:staff",)  # the same ACL rules as `quelle ingest`

        # new, changed, renamed, a folder in and out; hidden and office lock files never
        (docs / "new.md").write_text("# New\n\nThe new badge office is in room 12.\n")
        (docs / ".hidden.md").write_text("# Hidden\n\nnot a document\n")
        (docs / "~$lock.md").write_text("an office suite's lock file\n")
        until(lambda: "new.md" in index(data), w.proc, log)
        (docs / "parking.md").write_text("# Parking\n\nVisitors park on level -3 after 10:00.\n")
        until(lambda: "level -3" in index(data).get("parking.md", {}).get("text", ""), w.proc, log)
        (docs / "onboarding.md").rename(docs / "welcome.md")
        until(lambda: "welcome.md" in index(data) and "onboarding.md" not in index(data), w.proc, log)
        sub = docs / "team"
        sub.mkdir()
        for i in range(2):
            (sub / f"memo-{i}.md").write_text(memo(i))
        until(lambda: {"memo-0.md", "memo-1.md"} <= set(index(data)), w.proc, log)
        shutil.rmtree(sub)
        until(lambda: not {"memo-0.md", "memo-1.md"} & set(index(data)), w.proc, log)
        assert ".hidden.md" not in index(data) and "~$lock.md" not in index(data)

        # a file written in two parts is ingested once, whole
        applied = w.metric("quelle_sync_changes_applied_total")
        slow = docs / "slow.md"
        with open(slow, "w") as f:
            f.write("# Slow\n\nThe first half of the slow file.\n")
            f.flush()
            time.sleep(0.3)  # under the settle time
            f.write("\nThe second half, END-OF-SLOW.\n")
        until(lambda: "slow.md" in index(data), w.proc, log)
        time.sleep(1.5)
        assert "END-OF-SLOW" in index(data)["slow.md"]["text"] and index(data)["slow.md"]["hash"] == sha(slow)
        assert w.metric("quelle_sync_changes_applied_total") == applied + 1  # never a half version first

        # a burst of 300 files: a few commits, not 300
        before = index(data)[""]["generation"]
        applied = w.metric("quelle_sync_changes_applied_total")
        burst = docs / "burst"
        burst.mkdir()
        for i in range(300):
            (burst / f"b{i:03d}.md").write_text(memo(i))
        until(lambda: sum(name.startswith("b") and name.endswith(".md") for name in index(data)) == 300,
              w.proc, log, timeout=300)
        assert index(data)[""]["generation"] - before <= 3
        assert w.metric("quelle_sync_changes_applied_total") - applied >= 300
        assert w.metric("quelle_sync_failures_total") == 0
        assert w.stop() == 0  # SIGTERM: a clean stop

        # changes while nobody watches are caught up on the next start
        (docs / "parking.md").unlink()
        (docs / "late.md").write_text("# Late\n\nThe late shift starts at 22:00.\n")
        w = Watch(docs, data, log, *acl, QUELLE_COMMIT_INTERVAL="0")
        until(lambda: "late.md" in index(data) and "parking.md" not in index(data), w.proc, log)

        # SIGKILL in the middle of a burst: the index keeps whole commits; the next start completes it
        start = len(index(data))
        burst2 = docs / "burst2"
        burst2.mkdir()
        long = "".join(f"\n## Part {k}\n\n" + " ".join(f"Clause {k}.{j} of the second burst's memo." for j in range(40))
                       for k in range(6))  # several chunks a file: several commits (QUELLE_COMMIT_INTERVAL=0)
        for i in range(200):
            (burst2 / f"c{i:03d}.md").write_text(memo(i, long))
        until(lambda: len(index(data)) > start + 20, w.proc, log, timeout=300)
        w.stop(signal.SIGKILL)
        partial = index(data)
        assert sum(n.startswith("c") for n in partial) < 200  # killed in the middle of the burst
        assert partial[""]["chunks"] == partial[""]["listed_chunks"] == partial[""]["unique_chunks"]
        w = Watch(docs, data, log, *acl)
        until(lambda: sum(n.startswith("c") and n.endswith(".md") for n in index(data)) == 200, w.proc, log,
              timeout=300)
        final = index(data)
        files = {p.name for p in docs.rglob("*.md") if not p.name.startswith((".", "~$"))}
        assert set(final) - {""} == files  # nothing missing, nothing extra
        assert final[""]["chunks"] == final[""]["listed_chunks"] == final[""]["unique_chunks"]  # no duplicates
        assert all(final[name]["hash"] == sha(next(docs.rglob(name))) for name in files)
    finally:
        w.stop()


def test_polling_for_network_file_systems(tmp_path):
    docs, data = tmp_path / "docs", tmp_path / "data"
    docs.mkdir()
    (docs / "a.md").write_text(memo(1))
    log = tmp_path / "watch.log"
    w = Watch(docs, data, log, "--polling")
    try:
        until(lambda: "a.md" in index(data), w.proc, log)
        (docs / "b.md").write_text(memo(2))
        (docs / "a.md").unlink()
        until(lambda: "b.md" in index(data) and "a.md" not in index(data), w.proc, log)
    finally:
        assert w.stop() == 0
