"""Two `quelle serve` replicas on one PostgreSQL index, as behind a load balancer, each with a data dir of its
own as on two hosts: a change made through one holds on the other from its next request, both read the same
generation, API keys made on one host work on both and a key revoked on the other stops on both, and a
conversation started on one continues on the other (keys and conversations live beside the index in
PostgreSQL; rate limits are per replica, docs/scaling.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import ExitStack

import httpx
import pytest

from tests.conftest import ROOT, SAMPLES
from tests.service.test_e2e import free_port, serve

pytestmark = pytest.mark.integration


def test_two_replicas_answer_consistently(pg_server, tmp_path):
    hosts = {name: tmp_path / f"host-{name}" for name in ("a", "b")}  # nothing shared on disk
    pg = {"QUELLE_PG_DSN": pg_server, "QUELLE_PG_SCHEMA": "replicas"}
    env = {**os.environ, "PYTHONPATH": str(ROOT), **pg}

    def quelle(host: str, *args: str) -> str:
        run = subprocess.run([sys.executable, "-m", "cli.main", *args, "--data-dir", str(hosts[host] / "data")],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
        assert run.returncode == 0, run.stderr
        return run.stdout

    quelle("a", "ingest", str(SAMPLES))
    root = json.loads(quelle("a", "keys", "create", "--name", "root", "--groups", "admin", "--json"))["key"]
    bob = json.loads(quelle("a", "keys", "create", "--name", "bob", "--groups", "eng", "--json"))["key"]
    as_root, as_bob = ({"Authorization": f"Bearer {k}"} for k in (root, bob))
    with ExitStack() as stack:
        bases = []
        for host in hosts.values():
            port = free_port()
            host.mkdir(exist_ok=True)
            stack.enter_context(serve(host / "data", port, host, QUELLE_RATE_LIMIT="0", **pg))
            bases.append(f"http://127.0.0.1:{port}")
        a, b = bases
        generations = {httpx.get(f"{u}/readyz").json()["generation"] for u in bases}
        assert len(generations) == 1

        # an upload through A is searchable through B at once, in the same generation
        r = httpx.post(f"{a}/v1/documents", headers=as_root, timeout=120,
                       files={"file": ("lab.md", b"# Robot lab\n\nThe robot lab opens at 7:00 in building C.\n")})
        assert r.status_code == 201, r.text
        lab = r.json()["document"]["id"]
        got = httpx.post(f"{b}/v1/search", json={"query": "robot lab opening time", "top_k": 1}, headers=as_bob)
        assert got.json()["results"][0]["document_id"] == lab
        assert httpx.get(f"{a}/readyz").json()["generation"] == httpx.get(f"{b}/readyz").json()["generation"]

        # an access change through B holds on A from the next request
        assert httpx.put(f"{b}/v1/documents/{lab}/acl", json={"acl": ["group:hr"]}, headers=as_root).status_code \
            == 200
        got = httpx.post(f"{a}/v1/search", json={"query": "robot lab opening time"}, headers=as_bob).json()
        assert lab not in [h["document_id"] for h in got["results"]]
        assert httpx.get(f"{a}/v1/documents/{lab}", headers=as_bob).status_code == 404

        # a conversation started on A goes on on B: the follow-up is understood from the first question
        first = httpx.post(f"{a}/v1/ask", json={"question": "What is the parental leave policy?"},
                           headers=as_bob, timeout=60).json()
        follow = httpx.post(f"{b}/v1/ask", json={"question": "How long is it?", "session_id": first["session_id"]},
                            headers=as_bob, timeout=60).json()
        alone = httpx.post(f"{b}/v1/ask", json={"question": "How long is it?"}, headers=as_bob, timeout=60).json()
        assert follow["session_id"] == first["session_id"]
        assert "20 weeks" in follow["answer"] and "20 weeks" not in alone["answer"]

        # a key revoked on host b (made on host a) stops on both replicas
        assert "revoked" in quelle("b", "keys", "revoke", "bob")
        for u in bases:
            assert httpx.post(f"{u}/v1/search", json={"query": "leave"}, headers=as_bob).status_code == 401
        for host in hosts.values():  # keys and conversations are in PostgreSQL, not on either host's disk
            assert not list((host / "data").glob("*.sqlite")), list((host / "data").iterdir())
