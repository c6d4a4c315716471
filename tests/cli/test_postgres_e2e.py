"""`quelle ingest`, `stats`, `search`, `eval` and `serve` unchanged on the PostgreSQL backend: only
QUELLE_PG_DSN (and a schema) set, a real PostgreSQL with pgvector, real processes and HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from index.store import StoreConfig
from service.auth import KeyStore
from tests.conftest import DATA, ROOT, SAMPLES
from tests.service.test_e2e import free_port, serve

pytestmark = pytest.mark.integration


def test_the_cli_and_the_service_work_unchanged_on_postgresql(pg_server, tmp_path):
    data_dir = tmp_path / "data"  # uploads: the index, keys and conversations are in PostgreSQL
    pg = {"QUELLE_PG_DSN": pg_server, "QUELLE_PG_SCHEMA": "e2e"}
    env = {**os.environ, "PYTHONPATH": str(ROOT), **pg}

    def quelle(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", *args, "--data-dir", str(data_dir)],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)

    missing = quelle("stats")
    assert missing.returncode == 3 and "no index in PostgreSQL" in missing.stderr and "password" not in missing.stderr
    run = quelle("ingest", str(SAMPLES), "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["added"] == 6
    assert not (data_dir / "quelle.sqlite").exists()  # nothing of the index on disk
    again = quelle("ingest", str(SAMPLES))
    assert "0 added, 0 updated, 6 unchanged" in again.stdout  # unchanged files are skipped, as embedded
    stats = json.loads(quelle("stats", "--json").stdout)
    assert stats["documents"] == 6 and stats["vector_index"].startswith("hnsw")
    found = quelle("search", "per diem outside Europe", "--json")
    assert json.loads(found.stdout)[0]["source"].endswith("travel-and-expenses.docx")
    gold = quelle("eval", str(DATA / "qa.jsonl"), "--json")
    assert gold.returncode == 0, gold.stderr
    assert json.loads(gold.stdout)["hybrid"]["R@5"] >= 0.8

    keys = KeyStore.open(StoreConfig(data_dir, pg_dsn=pg_server, pg_schema="e2e"))
    root, _ = keys.create("root", ("admin",))
    bob, _ = keys.create("bob", ("eng",))
    keys.close()
    port = free_port()
    with serve(data_dir, port, tmp_path, QUELLE_RATE_LIMIT="0", **pg):
        base = f"http://127.0.0.1:{port}"
        as_root, as_bob = ({"Authorization": f"Bearer {k}"} for k in (root, bob))
        r = httpx.post(f"{base}/v1/ask", json={"question": "How long is parental leave?"}, headers=as_bob,
                       timeout=60)
        assert r.status_code == 200 and "20 weeks" in r.json()["answer"], r.text
        handbook = r.json()["citations"][0]["document_id"]
        # an access change holds from the next request, through the same API
        r = httpx.put(f"{base}/v1/documents/{handbook}/acl", json={"acl": ["group:hr"]}, headers=as_root)
        assert r.status_code == 200
        r = httpx.post(f"{base}/v1/ask", json={"question": "How long is parental leave?"}, headers=as_bob,
                       timeout=60)
        assert "20 weeks" not in r.json()["answer"]
        # an upload goes through the same pipeline into PostgreSQL, and a delete takes it out
        r = httpx.post(f"{base}/v1/documents", headers=as_root, timeout=120,
                       files={"file": ("lab.md", b"# Robot lab\n\nThe robot lab opens at 7:00 in building C.\n")})
        assert r.status_code == 201, r.text
        lab = r.json()["document"]["id"]
        hit = httpx.post(f"{base}/v1/search", json={"query": "robot lab opening time", "top_k": 1},
                         headers=as_bob).json()["results"][0]
        assert hit["document_id"] == lab
        assert httpx.delete(f"{base}/v1/documents/{lab}", headers=as_root).status_code == 204
        hits = httpx.post(f"{base}/v1/search", json={"query": "robot lab opening time"}, headers=as_bob).json()
        assert lab not in [h["document_id"] for h in hits["results"]]
        ready = httpx.get(f"{base}/readyz").json()
        assert ready["documents"] == 6
