"""The lag from a file's change to its being searchable under `quelle watch`, one file at a time and in a burst.

    python bench/watch_lag.py                 # the default embedder, a burst of 1,000 files
    python bench/watch_lag.py --files 200 --model all-MiniLM-L6-v2

A real `quelle watch` process (inotify, QUELLE_WATCH_SETTLE default 1 s) on an empty folder. First 10 files
written one at a time, each waited for; then N files written as fast as Python can (a burst), and deleted
again. The bench polls the index as the service reads it (every 0.1 s) and takes each file's lag as the time
from its write to the first read that finds it (for a deletion: that no longer finds it). Printed in one run:
lag p50 / p95 / max for each phase, the commits the burst took, and the watcher's own lag histogram.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def memo(i: int) -> str:
    return (f"# Memo {i}\n\nThe facilities team notes for memo {i}: meeting room {i % 40} is booked on day "
            f"{i % 28 + 1}, and the printer on floor {i % 9} needs toner number {i * 13 % 997}.\n")


def sources(data_dir: Path) -> set[str]:
    from index.store import StoreConfig, open_store

    try:
        store = open_store(StoreConfig(data_dir))
    except Exception:
        return set()
    try:
        docs, _ = store.documents(0, 1_000_000)
        return {d.source for d in docs}
    finally:
        store.close()


def generation(data_dir: Path) -> int:
    from index.store import StoreConfig, open_store

    with open_store(StoreConfig(data_dir)) as store:
        return store.generation


def watch_until(data_dir: Path, written: dict[str, float], present: bool, timeout: float) -> dict[str, float]:
    """Poll until every path in `written` is (or is no longer) in the index; each one's lag in seconds."""
    lags: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(lags) < len(written) and time.monotonic() < deadline:
        now = time.time()
        found = sources(data_dir)
        for path, at in written.items():
            if path not in lags and (path in found) == present:
                lags[path] = now - at
        time.sleep(0.1)
    if len(lags) < len(written):
        raise SystemExit(f"{len(written) - len(lags)} files not {'in' if present else 'out of'} the index after "
                         f"{timeout:.0f} s")
    return lags


def summary(lags: list[float]) -> str:
    q = statistics.quantiles(lags, n=20, method="inclusive") if len(lags) > 1 else lags * 19
    return f"p50 {statistics.median(lags):6.2f} s   p95 {q[18]:6.2f} s   max {max(lags):6.2f} s"


def main() -> None:
    from bench.machine import cpu

    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--model", default="multilingual")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="quelle-watch-lag-"))
    folder, data = tmp / "docs", tmp / "data"
    folder.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QUELLE_EMBEDDING_MODEL": args.model, "HF_HUB_OFFLINE": "1"}
    log = open(tmp / "watch.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "watch", str(folder), "--data-dir", str(data),
                             "--metrics-port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        (folder / "first.md").write_text(memo(0))
        watch_until(data, {(folder / "first.md").resolve().as_posix(): time.time()}, True, 300)
        single = []
        for i in range(1, 11):
            path = folder / f"one-{i}.md"
            at = time.time()
            path.write_text(memo(i))
            single += watch_until(data, {path.resolve().as_posix(): at}, True, 120).values()
        before = generation(data)
        burst = folder / "burst"
        burst.mkdir()
        written = {}
        started = time.time()
        for i in range(args.files):
            path = burst / f"m{i:05d}.md"
            path.write_text(memo(i))
            written[path.resolve().as_posix()] = time.time()
        wrote = time.time() - started
        added = list(watch_until(data, written, True, 3600).values())
        commits = generation(data) - before
        deleted_at = time.time()
        shutil.rmtree(burst)
        removed = list(watch_until(data, dict.fromkeys(written, deleted_at), False, 600).values())
        metrics = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/metrics"], capture_output=True,
                                 text=True).stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    print(f"CPU: {cpu()}; model: {args.model}; settle 1 s; inotify")
    print(f"one file at a time (10):        {summary(single)}")
    print(f"burst of {args.files} files written in {wrote:.2f} s, added:   {summary(added)}; "
          f"{commits} commit(s)")
    print(f"the same {args.files} deleted at once (rm -r): {summary(removed)}")
    count = re.search(r'^quelle_sync_lag_seconds_count\{source="watch"\} (\S+)', metrics, re.M)
    total = re.search(r'^quelle_sync_lag_seconds_sum\{source="watch"\} (\S+)', metrics, re.M)
    if count and total:
        print(f"the watcher's own histogram: {float(count.group(1)):.0f} changes, mean lag "
              f"{float(total.group(1)) / float(count.group(1)):.2f} s")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
