"""Access lists against a set-based oracle: random documents, access lists, users and queries. Whatever the
caller may read, results come only from readable documents and are exactly the top k of the unrestricted
ranking among them (filtered before ranking, so never fewer), and no keyword score or order is shaped by an
unreadable document: BM25 counts the readable documents only."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.records import DocumentRecord
from index.store import SearchFilter, Store, StoreConfig, open_store
from tests.index.contract import EMB, make_doc

WORDS = ["salary", "budget", "review", "holiday", "merger", "laptop", "policy", "memo", "travel", "audit"]
ENTRIES = ["public", "group:hr", "group:finance", "group:legal", "user:alice", "user:bob"]

acl_lists = st.lists(st.sampled_from(ENTRIES), min_size=1, max_size=3).map(lambda xs: tuple(sorted(set(xs))))
documents = st.lists(st.tuples(st.lists(st.sampled_from(WORDS), min_size=3, max_size=8), acl_lists),
                     min_size=1, max_size=14)
callers = st.lists(st.frozensets(st.sampled_from(ENTRIES), max_size=4), min_size=1, max_size=6)
queries = st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join), min_size=1, max_size=5)


def _store(where, tmp: str, name: str, docs: list, keep) -> Store:  # type: ignore[no-untyped-def]
    store = open_store(where(Path(tmp) / name), model_id=EMB.model_id, dim=EMB.dim, writable=True)
    for i, (words, acl) in enumerate(docs):
        if keep(f"/d{i}.txt"):
            doc, chunks = make_doc(f"/d{i}.txt", [" ".join(words) + f" doc{i}"])
            store.put(DocumentRecord(**{**doc.__dict__, "acl": acl}), chunks,
                      EMB.embed_passages([c.embed_text for c in chunks]))
    store.commit()
    return store


@pytest.fixture(params=["embedded", "postgres"])
def where(request):  # type: ignore[no-untyped-def]
    """Where each store of an example lives: a folder (embedded), or a schema of its own in a real PostgreSQL
    (dropped after the example)."""
    if request.param == "embedded":
        return StoreConfig
    dsn = request.getfixturevalue("pg_server")
    from tests.pg import schema_for

    return lambda path: StoreConfig(path, pg_dsn=dsn, pg_schema=schema_for(path))


def _drop(where, stores: list[Store]) -> None:  # type: ignore[no-untyped-def]
    for s in stores:
        config = getattr(s, "config", None)
        s.close()
        if config is not None and config.pg_dsn:
            import psycopg

            with psycopg.connect(config.pg_dsn, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {config.pg_schema} CASCADE")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(docs=documents, who=callers, texts=queries, k=st.integers(1, 6))
def test_no_leak_and_exact_top_k_among_readable_documents(where, docs, who, texts, k):
    """Dense: the unrestricted ranking cut to the readable documents. Keyword: exactly the ranking and the
    scores of an index that holds only the readable documents (BM25's statistics never count the others).
    The same oracle for both backends."""
    with tempfile.TemporaryDirectory() as tmp:
        acl_of = {f"/d{i}.txt": set(acl) for i, (_, acl) in enumerate(docs)}
        store = _store(where, tmp, "all", docs, lambda _: True)
        alone: dict[frozenset[str], Store] = {}
        try:
            for text in texts:
                q = EMB.embed_query(text)
                full = store.retrieve(q, text, len(docs) + 1)
                for principals in who:
                    readable = frozenset(s for s, acl in acl_of.items() if acl & principals)
                    if readable not in alone:
                        alone[readable] = _store(where, tmp, f"only{len(alone)}", docs, readable.__contains__)
                    got = store.retrieve(q, text, k, SearchFilter(principals=principals))
                    by_itself = alone[readable].retrieve(q, text, len(docs) + 1)
                    for path in ("dense", "keyword"):
                        mine = [(h.source, h.score) for h in getattr(got, path)]
                        assert {s for s, _ in mine} <= readable, f"{path} leaked"
                        reference = full if path == "dense" else by_itself
                        oracle = [(h.source, h.score) for h in getattr(reference, path) if h.source in readable][:k]
                        # the same k results; among equal scores the order is arbitrary
                        assert len(mine) == len(oracle), (path, principals, text)
                        assert [round(x, 4) for _, x in mine] == [round(x, 4) for _, x in oracle], (path, text)
                        cut = oracle[-1][1] if oracle else 0.0
                        assert {s for s, x in oracle if x > cut + 1e-4} <= {s for s, _ in mine}
        finally:
            _drop(where, [store, *alone.values()])
