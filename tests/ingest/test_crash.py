"""Crash safety: kill a real ingest process with SIGKILL at random moments, reopen, check, finish.

After every kill the last committed generation must open and be consistent (vectors == chunk rows, no
duplicate chunk ids, only whole documents), and a re-run must complete to the same index a clean run builds.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT
from tests.index.test_faiss_store import check_consistent

TOPICS = ["leave", "expenses", "laptops", "security", "travel", "onboarding", "payroll", "parking"]


def make_corpus(root: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True)
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        paras = [" ".join(f"Rule {i}.{p}.{s} about {topic} says item {rng.randint(0, 10**6)} applies."
                          for s in range(rng.randint(2, 12))) for p in range(rng.randint(1, 6))]
        (root / f"doc{i:04d}.md").write_text(f"# {topic.title()} {i}\n\n" + "\n\n".join(paras))
    for name in ("multipage.pdf", "encrypted.pdf", "truncated.pdf", "policy.docx", "notice-sjis.txt"):
        shutil.copy(DATA / name, root / name)


def run_worker(corpus: Path, data_dir: Path, kill_after: float | None) -> subprocess.CompletedProcess | None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.ingest.crash_worker", str(corpus), str(data_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    if kill_after is None:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return subprocess.CompletedProcess(proc.args, 0, out, err)
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    return None


def stored_state(data_dir: Path) -> tuple[list, dict[str, str]]:
    store = check_consistent(data_dir)
    chunks = store._db.execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
    docs = dict(store._db.execute("SELECT source, content_hash FROM documents").fetchall())
    store.close()
    return chunks, docs


def mutate(corpus: Path, rng: random.Random) -> None:
    """Change, add or delete a few files between kills, so updates and --sync are killed too."""
    files = sorted(corpus.glob("doc*.md"))
    for path in rng.sample(files, k=min(3, len(files))):
        action = rng.random()
        if action < 0.5:
            path.write_text(path.read_text() + f"\n\nAmendment {rng.randint(0, 10**6)} to this rule.")
        elif action < 0.8:
            path.unlink()
        else:
            (corpus / f"new{rng.randint(0, 10**9)}.md").write_text(f"# New\n\nFresh rule {rng.random()}.")


def kill_loop(tmp_path: Path, kills: int, n_docs: int, seed: int) -> None:
    rng = random.Random(seed)
    corpus, data_dir = tmp_path / "corpus", tmp_path / "index"
    make_corpus(corpus, n_docs, seed)
    t0 = time.monotonic()
    run_worker(corpus, tmp_path / "timing", None)  # how long a whole run takes, to aim the kills
    full = time.monotonic() - t0
    generations = set()
    for _ in range(kills):
        run_worker(corpus, data_dir, rng.uniform(0, full * 1.1))
        if (data_dir / "quelle.sqlite").exists():
            store = check_consistent(data_dir)  # every reopen is consistent
            generations.add(store.generation)
            store.close()
        if rng.random() < 0.3:
            mutate(corpus, rng)
    assert len(generations) > 1, "the kills never landed between commits"
    run_worker(corpus, data_dir, None)  # a re-run completes
    chunks, docs = stored_state(data_dir)
    clean = tmp_path / "clean"
    run_worker(corpus, clean, None)
    clean_chunks, clean_docs = stored_state(clean)
    assert chunks == clean_chunks and docs == clean_docs  # nothing duplicated, nothing lost, nothing stale
    for source, content_hash in docs.items():
        assert hashlib.sha256(Path(source).read_bytes()).hexdigest() == content_hash


def test_sigkill_at_20_random_moments_leaves_a_consistent_index(tmp_path):
    kill_loop(tmp_path, kills=20, n_docs=120, seed=1)


@pytest.mark.slow
def test_sigkill_at_200_random_moments_leaves_a_consistent_index(tmp_path):
    kill_loop(tmp_path, kills=200, n_docs=200, seed=2)
