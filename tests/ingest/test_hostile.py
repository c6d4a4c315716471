"""Hostile files: each is reported with its own reason, the batch finishes, and parsing stays within its
stated bounds (time per file, memory per parser process), including real malformed PDFs from pikepdf."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from index.embedded import FaissSqliteStore
from ingest.chunking import Chunker
from ingest.pipeline import Ingestor
from ingest.sandbox import GRACE_S, ParseLimits, ParserPool
from tests.conftest import SAMPLES
from tests.ingest.hostile import make_hostile, pikepdf_pdfs

LIMITS = ParseLimits(timeout_s=10, memory_mb=768)
EXPECTED = {  # generated file -> a fragment its failure reason must hold
    "truncated.pdf": "corrupt or truncated", "not-a-pdf.pdf": "corrupt", "empty.pdf": "empty",
    "ref-loop.pdf": "cyclic", "deep-nesting.pdf": "corrupt", "bomb.pdf": "decompression bomb",
    # a page of 3.2 million words: stopped by the time limit or by pypdf's token limit, whichever comes first
    "enormous-page.pdf": "longer than 10 s|over pypdf's size limit (Reached maximum number of tokens",
    "invalid-utf8.txt": "encoding", "nested.html": "nested deeper",
    "unclosed.html": "nested deeper", "zip-bomb.docx": "zip bomb", "not-a-zip.docx": "not a valid DOCX",
    "future-zip.docx": "zip file version 11.1",
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile") / "docs"
    made = make_hostile(folder / "made", SAMPLES / "employee-handbook.pdf")
    pike = pikepdf_pdfs()
    if not pike and os.environ.get("CI"):
        pytest.fail("could not fetch pikepdf's sdist (pip download pikepdf)")
    (folder / "pikepdf").mkdir()
    for p in pike:
        (folder / "pikepdf" / p.name).write_bytes(p.read_bytes())
    (folder / "good").mkdir()
    (folder / "good" / "onboarding.md").write_bytes((SAMPLES / "onboarding.md").read_bytes())
    return folder, made, [p.name for p in pike]


def test_a_batch_of_hostile_files_finishes_with_one_reason_each(hostile, tmp_path, embedder):
    folder, made, pike = hostile
    me = psutil.Process()
    rss_before = me.memory_info().rss
    times: list[float] = []
    last = [time.monotonic()]

    def progress(report, done, total):  # noqa: ANN001
        now = time.monotonic()
        times.append(now - last[0])
        last[0] = now

    with FaissSqliteStore(tmp_path / "index", model_id=embedder.model_id, dim=embedder.dim, writable=True) as store, \
            ParserPool(2, LIMITS) as pool:
        report = Ingestor(store, embedder, Chunker(embedder.tokenizer), parser=pool).run([folder], progress=progress)
        workers = [w.proc for w in pool._idle]
    reasons = {os.path.basename(f.path): f.reason for f in report.failures}
    for name, fragment in EXPECTED.items():
        assert any(f in reasons.get(name, "") for f in fragment.split("|")), (name, reasons.get(name))
    assert all(r.strip() for r in reasons.values())
    assert not [n for n, r in reasons.items() if r.startswith("unexpected error")], reasons  # every one classified
    if pike:
        assert reasons["graph-encrypted.pdf"] == "encrypted PDF: it needs a password"
        assert report.added >= 10  # the well-formed ones among pikepdf's files still get in
    assert report.added + report.failed == len(made) + len(pike) + 1 and "onboarding.md" not in reasons
    # bounds: no file held the batch longer than the time limit (+ the grace before a kill, + a worker start)
    assert max(times) <= LIMITS.timeout_s + GRACE_S + 10, max(times)
    assert me.memory_info().rss - rss_before < 400 * 2**20  # bombs inflate in the parser processes, not here
    assert not any(p.is_alive() for p in workers)  # closing the pool stops its processes


def test_the_memory_limit_holds_and_a_dead_worker_is_replaced(tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"All work and no play makes a long file. " * 4_000_000)  # 160 MB of text
    small = tmp_path / "small.md"
    small.write_text("# Fine\n\nA perfectly ordinary note.")
    with ParserPool(1, ParseLimits(timeout_s=60, memory_mb=400)) as pool:
        got = dict((p.name, r) for p, r in pool.map([(big, big.read_bytes()), (small, small.read_bytes())]))
        assert "needs more than 400 MB" in getattr(got["big.txt"], "reason", ""), got["big.txt"]
        assert got["small.md"].sections[0].text.startswith("A perfectly")  # the same worker goes on

        # a worker killed mid-parse (as the kernel's OOM killer would): reported, replaced, the batch goes on
        slow = tmp_path / "slow.pdf"
        slow.write_bytes(make_slow_pdf())

        def kill_workers() -> None:
            for child in psutil.Process().children():
                if "spawn_main" in " ".join(child.cmdline()):  # parser processes, not the resource tracker
                    os.kill(child.pid, signal.SIGKILL)

        killer = threading.Timer(2.0, kill_workers)
        killer.start()
        got = list(pool.map([(slow, slow.read_bytes()), (small, small.read_bytes())]))
        killer.join()
        assert "killed by SIGKILL" in got[0][1].reason, got[0][1]
        assert got[1][1].sections[0].text.startswith("A perfectly") and pool.restarts == 1


def make_slow_pdf() -> bytes:
    from tests.ingest.hostile import _page_pdf

    return _page_pdf(b"BT /F1 1 Tf " + b"(word word word word word word word word) Tj 0 -1 Td " * 400_000 + b"ET")
