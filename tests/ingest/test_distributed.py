"""`quelle ingest --ray`: the same index as single-process ingestion, and a killed worker or driver costs
nothing. Real Ray clusters (started by the command under test, on this machine), real models, real files."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from index.store import StoreConfig, open_store
from tests.conftest import ROOT, SAMPLES

psutil = pytest.importorskip("psutil")
if os.environ.get("QUELLE_REQUIRE_RAY"):
    import ray  # noqa: F401  (.ci/run: Ray must be there)
else:
    pytest.importorskip("ray")

pytestmark = pytest.mark.integration

MINILM = {"QUELLE_EMBEDDING_MODEL": "all-MiniLM-L6-v2"}
TEST_DATA = ROOT / "tests" / "data"


def quelle(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def ingest(data_dir: Path, corpus: Path, *flags: str, **env: str) -> dict:
    proc = quelle("ingest", str(corpus), "--data-dir", str(data_dir), "--json", *flags, **env)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode in (0, 4), err  # 4: some files failed (named in the report)
    return json.loads(out)  # stdout is the report alone, whatever Ray prints


def snapshot(data_dir: Path) -> dict[str, tuple]:
    """Every document with its record fields, its chunks and their vectors, by source."""
    out = {}
    with open_store(StoreConfig(data_dir)) as store:
        for doc in store.documents(0, 10_000)[0]:
            chunks = store.chunks_of(doc.id)
            vectors = store.vectors_for(c.text_hash for c in chunks)
            out[doc.source] = (
                (doc.id, doc.title, doc.kind, doc.content_hash, doc.pages, doc.acl, doc.warnings),
                [(c.id, c.text, c.page, c.heading_path, c.text_hash) for c in chunks],
                {h: v / np.linalg.norm(v) for h, v in vectors.items()},
            )
    return out


def assert_same(got: dict[str, tuple], want: dict[str, tuple], *, subset: bool = False) -> None:
    assert set(got) <= set(want) if subset else set(got) == set(want)
    for source, (record, chunks, vectors) in got.items():
        want_record, want_chunks, want_vectors = want[source]
        assert record == want_record, source
        assert chunks == want_chunks, source  # whole documents: every chunk, same ids and texts
        assert set(vectors) == set(want_vectors) == {c[4] for c in chunks}, source
        for h, v in vectors.items():
            assert float(v @ want_vectors[h]) >= 0.9999, (source, h)


def generation(data_dir: Path) -> int:
    try:
        with open_store(StoreConfig(data_dir)) as store:
            return store.generation
    except Exception:  # not created yet
        return 0


def descendants(pid: int) -> list:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def wait_for(what, timeout: float, proc: subprocess.Popen[str]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """48 Markdown files of several sections each, and a PDF, a DOCX and a corrupt PDF."""
    root = tmp_path_factory.mktemp("corpus")
    rng = random.Random(7)
    words = ("policy expense travel laptop security badge office meeting budget report invoice vendor contract "
             "approval manager review quarter schedule holiday leave printer network password").split()
    for i in range(48):
        lines = [f"# Memo {i}", ""]
        for s in range(24):
            if s % 6 == 0:
                lines += ["", f"## Part {s // 6}", ""]
            lines.append(" ".join(rng.choice(words) for _ in range(14)) + f", item {i}-{s}.")
        (root / f"memo-{i:02d}.md").write_text("\n".join(lines) + "\n")
    for name in ("multipage.pdf", "policy.docx", "corrupt.pdf"):
        shutil.copy(TEST_DATA / name, root / name)
    return root


def test_ray_ingestion_equals_single_process_and_follows_changes(tmp_path):
    """The default (multilingual) model on the handbook (English, Japanese, Chinese; PDF, HTML, DOCX, Markdown)
    and a corrupt PDF: the same documents, chunk ids, texts and vectors (cosine >= 0.9999), the same failure;
    then a changed and a deleted file, with --sync: still the same, the unchanged chunks' vectors reused."""
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLES, corpus)
    shutil.copy(TEST_DATA / "corrupt.pdf", corpus / "corrupt.pdf")
    single, distributed = tmp_path / "single", tmp_path / "ray"
    want = ingest(single, corpus)
    got = ingest(distributed, corpus, "--ray")
    assert got["added"] == want["added"] > 5 and got["failed"] == want["failed"] == 1
    assert got["failures"] == want["failures"]
    assert got["chunks_written"] == want["chunks_written"]
    assert_same(snapshot(distributed), snapshot(single))
    assert not (distributed / "ray-processes.json").exists()  # a clean run leaves no record of processes

    onboarding = corpus / "onboarding.md"
    onboarding.write_text(onboarding.read_text() + "\n\n## Parking\n\nVisitors park on level -2 after 9:00.\n")
    (corpus / "it-security-policy.html").unlink()
    want = ingest(single, corpus, "--sync")
    got = ingest(distributed, corpus, "--ray", "--sync")
    for key in ("added", "updated", "unchanged", "removed", "chunks_written"):
        assert got[key] == want[key], key
    assert got["updated"] == 1 and got["removed"] == 1 and got["added"] == 0
    assert 0 < got["chunks_embedded"] < got["chunks_written"]  # the changed file's other chunks were reused
    assert_same(snapshot(distributed), snapshot(single))


@pytest.mark.slow  # ~40 s each: in .ci/run's slow stage, to keep the default run near 15 minutes
def test_a_killed_worker_is_retried(corpus, tmp_path):
    """The embedding actor is killed mid-run: Ray starts another, and the index is whole and the same."""
    want = snapshot_of_single(corpus, tmp_path)
    data_dir = tmp_path / "ray"
    proc = quelle("ingest", str(corpus), "--data-dir", str(data_dir), "--ray", "--json", "--commit-interval", "0",
                  QUELLE_RAY_ACTORS="1", **MINILM)
    try:
        actor = wait_for(lambda: next((p for p in descendants(proc.pid) if "ChunkAndEmbed" in _cmdline(p)), None),
                         120, proc)
        wait_for(lambda: generation(data_dir) >= 1, 120, proc)  # mid-run: some batches published
        actor.kill()
        out, err = proc.communicate(timeout=600)
    finally:
        _stop(proc)
    assert proc.returncode == 4, err  # the corrupt PDF
    report = json.loads(out)
    assert report["added"] == len(want) and report["failed"] == 1, report
    assert report["generation"] >= 2
    assert_same(snapshot(data_dir), want)


@pytest.mark.slow
def test_a_killed_driver_loses_nothing_and_a_rerun_completes(corpus, tmp_path):
    """SIGKILL to `quelle ingest --ray` once it has published a batch: the index holds whole documents only;
    the next run ends the processes the first one left (by their ids), adds the rest, duplicates nothing."""
    want = snapshot_of_single(corpus, tmp_path)
    data_dir = tmp_path / "ray"
    proc = quelle("ingest", str(corpus), "--data-dir", str(data_dir), "--ray", "--json", "--commit-interval", "0",
                  QUELLE_RAY_ACTORS="1", **MINILM)
    left: list = []
    try:
        wait_for(lambda: generation(data_dir) >= 1, 180, proc)
        left = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        partial = snapshot(data_dir)
        assert 0 < len(partial) < len(want)
        assert_same(partial, want, subset=True)  # every document in it is whole
        assert (data_dir / "ray-processes.json").exists()

        report = ingest(data_dir, corpus, "--ray", **MINILM)
        assert report["unchanged"] == len(partial)
        assert report["added"] == len(want) - len(partial)
        assert_same(snapshot(data_dir), want)
        gone, alive = psutil.wait_procs(left, timeout=10)
        assert not alive, [p.pid for p in alive]  # the second run ended what the killed one left running
    finally:
        _stop(proc)
        for p in left:  # whatever is still alive of the killed run: ours, ended by process id
            with contextlib.suppress(psutil.Error):
                p.kill()


_SINGLE: dict[str, dict] = {}


def snapshot_of_single(corpus: Path, tmp_path: Path) -> dict:
    """The single-process index of `corpus` with MiniLM (made once per session)."""
    if "minilm" not in _SINGLE:
        ingest(tmp_path / "single", corpus, **MINILM)
        _SINGLE["minilm"] = snapshot(tmp_path / "single")
    return _SINGLE["minilm"]


def _cmdline(p) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=30)
