"""Permissions through the HTTP API against a set-based oracle, with hypothesis driving random sequences of
access-list changes (by an administrator) and reads by users with random groups: search in every mode,
/v1/documents list and get, and answers. After every change, the very next request must see it: nothing from a
document the caller may not read, and search results exactly those an administrator gets when restricting the
same query to the caller's readable documents (so filtering happens before top-k: never fewer results)."""

from __future__ import annotations

import random

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from index.store import open_store
from ingest.chunking import Chunker
from ingest.pipeline import Ingestor
from service.app import create_app
from service.auth import KeyStore
from service.config import Settings

TOPICS = ["salary bands", "annual leave", "merger plans", "laptop refresh", "travel per diem", "audit findings",
          "office move", "pension scheme", "security incident", "hiring freeze", "bonus pool", "canteen menu"]
GROUPS = ["hr", "finance", "legal", "eng"]
USERS = {f"u{i}": tuple(random.Random(i).sample(GROUPS, i % 3)) for i in range(6)}
ENTRIES = ["public", *(f"group:{g}" for g in GROUPS), *(f"user:{u}" for u in USERS)]
acls = st.lists(st.sampled_from(ENTRIES), min_size=1, max_size=3).map(lambda xs: tuple(sorted(set(xs))))
CHECKS = {"requests": 0}


@pytest.fixture(scope="module", params=["embedded", "postgres"])
def setup(request, tmp_path_factory, embedder):
    """The corpus ingested into either backend: (settings for the service, where the index is, API keys)."""
    root = tmp_path_factory.mktemp("acl-oracle")
    docs = root / "docs"
    docs.mkdir()
    for i, topic in enumerate(TOPICS):  # two documents per topic, so most queries match readable and hidden ones
        for part in ("memo", "minutes"):
            (docs / f"{i:02d}-{part}.md").write_text(
                f"# {topic.title()} {part}\n\nThis {part} is about {topic}. Reference number {i}-{part}.")
    data_dir = root / "index"
    pg = {}
    if request.param == "postgres":
        pg = {"pg_dsn": request.getfixturevalue("pg_server"), "pg_schema": "acl_service_oracle"}
    settings = Settings(_env_file=None, data_dir=data_dir, auth="keys", rate_limit=0, **pg)
    with open_store(settings.store(), model_id=embedder.model_id, dim=embedder.dim, writable=True) as store:
        assert Ingestor(store, embedder, Chunker(embedder.tokenizer)).run([docs]).added == 2 * len(TOPICS)
    keys = KeyStore.open(settings.store())
    tokens = {name: keys.create(name, groups)[0] for name, groups in [*USERS.items(), ("root", ("admin",))]}
    keys.close()
    return settings, settings.store(), tokens


def test_random_access_lists_and_revocations_never_leak(setup, embedder):
    settings_, where, tokens = setup
    CHECKS["requests"] = 0
    client = TestClient(create_app(settings_, embedder=embedder))
    client.__enter__()
    auth = {name: {"Authorization": f"Bearer {key}"} for name, key in tokens.items()}
    listing = client.get("/v1/documents", params={"limit": 500}, headers=auth["root"]).json()["documents"]
    doc_ids = sorted(d["id"] for d in listing)
    source_of = {d["id"]: d["source"] for d in listing}
    name = {d: source_of[d].rsplit("/", 1)[1] for d in doc_ids}  # "03-memo.md" -> "Reference number 3-memo."
    text_of = {d: f"Reference number {int(name[d][:2])}-{name[d][3:-3]}." for d in doc_ids}

    class Permissions(RuleBasedStateMachine):
        @initialize(labels=st.lists(acls, min_size=len(doc_ids), max_size=len(doc_ids)))
        def label_everything(self, labels):
            self.acl = dict(zip(doc_ids, labels, strict=True))
            with open_store(where, writable=True) as store:
                for doc_id, acl in self.acl.items():
                    store.set_acl(doc_id, acl)
                store.commit()

        def readable(self, user: str) -> set[str]:
            mine = {"public", f"user:{user}", *(f"group:{g}" for g in USERS[user])}
            return {d for d, acl in self.acl.items() if mine & set(acl)}

        @rule(doc=st.sampled_from(doc_ids), acl=acls)
        def relabel(self, doc, acl):
            r = client.put(f"/v1/documents/{doc}/acl", json={"acl": list(acl)}, headers=auth["root"])
            assert r.status_code == 200 and tuple(r.json()["acl"]) == acl
            self.acl[doc] = acl

        @rule(user=st.sampled_from(sorted(USERS)), topic=st.sampled_from(TOPICS), k=st.integers(1, 8),
              mode=st.sampled_from(["dense", "keyword", "hybrid"]))
        def search(self, user, topic, k, mode):
            readable = self.readable(user)
            body = {"query": f"What about {topic}?", "top_k": k, "mode": mode}
            got = client.post("/v1/search", json=body, headers=auth[user]).json()["results"]
            assert {r["document_id"] for r in got} <= readable, "search leaked"
            assert all(s in {source_of[d] for d in readable} for r in got for s in r["also_in"])
            if readable:
                ref = client.post("/v1/search", headers=auth["root"],
                                  json={**body, "filters": {"document_ids": sorted(readable)}}).json()["results"]
            else:
                ref = []
            assert [(r["chunk_id"], r["score"]) for r in got] == [(r["chunk_id"], r["score"]) for r in ref]
            if mode == "dense":
                assert len(got) == min(k, len(readable))  # never fewer than the readable documents allow
            CHECKS["requests"] += 2

        @rule(user=st.sampled_from(sorted(USERS)), doc=st.sampled_from(doc_ids))
        def documents(self, user, doc):
            readable = self.readable(user)
            listed = client.get("/v1/documents", params={"limit": 500}, headers=auth[user]).json()
            assert {d["id"] for d in listed["documents"]} == readable and listed["total"] == len(readable)
            status = client.get(f"/v1/documents/{doc}", headers=auth[user]).status_code
            assert status == (200 if doc in readable else 404)
            CHECKS["requests"] += 2

        @rule(user=st.sampled_from(sorted(USERS)), topic=st.sampled_from(TOPICS))
        def ask(self, user, topic):
            readable = self.readable(user)
            r = client.post("/v1/ask", json={"question": f"What does the memo say about {topic}?"},
                            headers=auth[user])
            assert r.status_code == 200
            hidden = {source_of[d] for d in doc_ids if d not in readable}
            assert not {c["source"] for c in r.json()["citations"]} & hidden, "answer cited a hidden document"
            assert not any(source_of[d] in r.text or text_of[d] in r.text for d in doc_ids if d not in readable)
            CHECKS["requests"] += 1

    try:  # hypothesis picks each run's length at random: run until thousands of requests have been checked
        for _ in range(6):
            run_state_machine_as_test(Permissions, settings=settings(
                max_examples=30, stateful_step_count=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))
            if CHECKS["requests"] >= 2000:
                break
    finally:
        client.__exit__(None, None, None)
    print(f"{CHECKS['requests']} checked requests")
    assert CHECKS["requests"] >= 2000
