"""Ingestion while `quelle serve` answers: a writer process commits generation after generation (each adds one
bulletin and removes an old one) while clients search over HTTP. Every response must come from ONE generation
(exactly that generation's bulletins: never a half-applied commit), no request may fail, and the service must
follow each new generation without a restart."""

from __future__ import annotations

import re
import shutil
import threading
import time

import httpx
import pytest

from index.embedded import FaissSqliteStore
from ingest.chunking import Chunker
from ingest.pipeline import Ingestor
from tests.service.test_e2e import free_port, serve

pytestmark = pytest.mark.integration
BATCHES = 12
KEEP = 3  # bulletins alive at once


def test_no_torn_reads_while_ingesting(built_index, tmp_path, embedder):
    data_dir = tmp_path / "index"
    shutil.copytree(built_index, data_dir)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()
    live: dict[int, set[int]] = {}  # generation -> bulletins it holds
    with FaissSqliteStore(data_dir, model_id=None, dim=None, writable=False) as store:
        live[store.generation] = set()
    seen: list[tuple[str, int, set[int]]] = []
    errors: list[str] = []
    done = threading.Event()

    def read(mode: str) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            while not done.is_set():
                r = http.post("/v1/search", json={"query": "bulletin rota code", "top_k": 20, "mode": mode})
                if r.status_code != 200:
                    errors.append(f"{mode}: {r.status_code} {r.text[:200]}")
                    continue
                body = r.json()
                got = {int(m) for x in body["results"] for m in re.findall(r"bulletin-(\d+)\.md$", x["source"])}
                seen.append((mode, body["generation"], got))

    with serve(data_dir, port, tmp_path, QUELLE_AUTH="off", QUELLE_RATE_LIMIT="0"):
        readers = [threading.Thread(target=read, args=(m,)) for m in ("keyword", "dense", "hybrid")]
        for t in readers:
            t.start()
        try:
            for k in range(1, BATCHES + 1):
                (inbox / f"bulletin-{k}.md").write_text(
                    f"# Bulletin {k}\n\nThis bulletin sets the rota code to zeta-{k} for week {k}.\n")
                if k > KEEP:
                    (inbox / f"bulletin-{k - KEEP}.md").unlink()
                with FaissSqliteStore(data_dir, model_id=embedder.model_id, dim=embedder.dim,
                                      writable=True) as store:
                    report = Ingestor(store, embedder, Chunker(embedder.tokenizer),
                                      commit_interval=float("inf")).run([inbox], sync=True)
                live[report.generation] = set(range(max(1, k - KEEP + 1), k + 1))
                mark = len(seen)  # let the readers make a few requests against this generation (slow machines)
                deadline = time.monotonic() + 30
                while len(seen) < mark + 3 and time.monotonic() < deadline and not errors:
                    time.sleep(0.05)
        finally:
            done.set()
            for t in readers:
                t.join()
        final = httpx.post(f"http://127.0.0.1:{port}/v1/search", json={"query": "bulletin", "mode": "keyword"},
                           timeout=30).json()

    assert errors == []
    assert len(seen) >= 3 * BATCHES, len(seen)
    generations = {g for _, g, _ in seen}
    assert len(generations) >= BATCHES // 2, generations  # the readers saw the index move, without a restart
    for mode, gen, got in seen:
        assert gen in live, (mode, gen)
        if mode == "keyword":  # every bulletin matches: exactly that generation's set
            assert got == live[gen], (mode, gen, got, live[gen])
        else:
            assert got <= live[gen], (mode, gen, got, live[gen])
    for mode in ("keyword", "dense", "hybrid"):  # each reader's generations only move forward
        gens = [g for m, g, _ in seen if m == mode]
        assert gens == sorted(gens), mode
    assert final["generation"] == max(live)
