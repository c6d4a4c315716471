"""The PostgreSQL backend against the same contract as the embedded store, on a real PostgreSQL 18 with
pgvector started for the session (tests/pg.py); plus what is its own: the writer lock across processes'
sessions, snapshots, migrations and what a lost connection leaves."""

from __future__ import annotations

import pytest

from index.errors import IndexLockedError, IndexMismatchError
from index.postgres import BACKEND, PostgresStore
from index.store import StoreConfig
from tests.index.contract import EMB, StoreContract, put
from tests.pg import schema_for


def config(pg_server: str, path, **extra) -> StoreConfig:  # type: ignore[no-untyped-def]
    return StoreConfig(path, pg_dsn=pg_server, pg_schema=schema_for(path), **extra)


@pytest.fixture
def opener(pg_server):
    opened: list[PostgresStore] = []

    def _open(path, writable=True, model_id=EMB.model_id, dim=EMB.dim):  # type: ignore[no-untyped-def]
        s = PostgresStore(config(pg_server, path), model_id=model_id, dim=dim, writable=writable)
        opened.append(s)
        return s

    yield _open
    for s in opened:
        s.close()


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def open_store(self, opener):
        return opener


def test_one_writer_at_a_time_and_the_refusal_names_it(opener, pg_server, tmp_path):
    writer = opener(tmp_path)
    put(writer, "/d/a.txt", ["first"])
    writer.commit()
    with pytest.raises(IndexLockedError, match=r"being written by another process \(server pid \d+: quelle writer"):
        opener(tmp_path)
    with pytest.raises(IndexLockedError, match="quelle writer pid"):
        BACKEND.check_not_written(config(pg_server, tmp_path))
    reader = opener(tmp_path, writable=False)  # readers are welcome
    assert reader.sources() == ["/d/a.txt"]
    writer.close()
    BACKEND.check_not_written(config(pg_server, tmp_path))  # free again
    opener(tmp_path).close()


def test_a_read_sees_one_generation_while_the_writer_commits(opener, tmp_path):
    writer = opener(tmp_path)
    put(writer, "/d/a.txt", ["alpha text"])
    writer.commit()
    reader = opener(tmp_path, writable=False)
    with reader._read() as cur:
        before = reader._seen(cur)
        put(writer, "/d/b.txt", ["beta text"])
        writer.commit()
        # still the snapshot taken at the read's start: its generation and its rows
        assert reader._seen(cur) == before
        assert cur.execute(f"SELECT count(*) FROM {reader.schema}.chunks").fetchone()[0] == 1
    assert reader.refresh() == before + 1 and reader.stats().chunks == 2


def test_the_backend_looks_without_opening(opener, pg_server, tmp_path):
    where = config(pg_server, tmp_path)
    assert BACKEND.recorded_model(where) is None and BACKEND.recorded_documents(where) is None
    store = opener(tmp_path)
    put(store, "/d/a.txt", ["x"])
    store.commit()
    assert BACKEND.recorded_model(where) == EMB.model_id and BACKEND.recorded_documents(where) == 1
    with pytest.raises(IndexMismatchError, match="another QUELLE_PG_SCHEMA"):
        BACKEND.check_model(where, "other/model", EMB.dim)
    BACKEND.check_model(where, EMB.model_id, EMB.dim)


def test_an_index_from_an_earlier_schema_step_is_migrated_once(pg_server, tmp_path):
    """An index left at the first step (tables only, as an older Quelle made it) gains the access and vector
    indexes when opened, and works; one claiming a step this code does not know is refused."""
    import psycopg

    from index.postgres import schema as ddl

    where = config(pg_server, tmp_path)
    s = where.pg_schema
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(f"CREATE SCHEMA {s}")
        conn.execute(ddl.create_meta(s))
        for key, value in {"model_id": EMB.model_id, "dim": str(EMB.dim), "generation": "0", "schema_step": "1",
                           "keyword_analyzer": "morph"}.items():
            conn.execute(f"INSERT INTO {s}.meta VALUES (%s, %s)", [key, value])
        conn.execute(ddl.STEPS[0][1].format(s=s, dim=EMB.dim))
    with pytest.raises(IndexMismatchError, match=r"needs schema steps 2 to 3 .* run `quelle ingest` once"):
        PostgresStore(where, model_id=None, dim=None, writable=False)  # a reader changes nothing
    store = PostgresStore(where, model_id=EMB.model_id, dim=EMB.dim, writable=True)
    try:
        put(store, "/d/a.txt", ["migrated index text"])
        store.commit()
        assert store.search(EMB.embed_query("migrated index text"), 1)[0].source == "/d/a.txt"
    finally:
        store.close()
    with psycopg.connect(pg_server, autocommit=True) as conn:
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", [s])}
        assert {"chunks_acl", "vectors_embedding"} <= indexes
        assert conn.execute(f"SELECT value FROM {s}.meta WHERE key = 'schema_step'").fetchone()[0] == \
            str(len(ddl.STEPS))
        conn.execute(f"UPDATE {s}.meta SET value = '99' WHERE key = 'schema_step'")
    with pytest.raises(IndexMismatchError, match="made by a newer Quelle"):
        PostgresStore(where, model_id=None, dim=None, writable=False)


def test_a_writer_whose_connection_dies_leaves_the_last_generation(opener, pg_server, tmp_path):
    import psycopg

    writer = opener(tmp_path)
    put(writer, "/d/a.txt", ["kept"])
    writer.commit()
    put(writer, "/d/b.txt", ["never committed"])
    with psycopg.connect(pg_server, autocommit=True) as admin:
        pid = writer._db.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(Exception):  # noqa: B017 - the server ended the session: any error of the driver
        writer.commit()
    reader = opener(tmp_path, writable=False)
    assert reader.sources() == ["/d/a.txt"] and reader.generation == 1
    opener(tmp_path).close()  # the lock went with the session


def test_dense_search_stays_exact_after_many_access_changes(opener, tmp_path):
    """Access-list changes update chunk rows, never the vectors' table: the HNSW graph gains no dead copies
    (when the vector sat in the chunk row, each change added one, and a search through the service's oracle
    once returned a passage scoring 0.22 over the right one at 0.73)."""
    import numpy as np

    from index.store import SearchFilter

    store = opener(tmp_path)
    docs = [put(store, f"/d/{i:02d}.txt", [f"topic {i} " + " ".join(["policy", "memo", "audit", "travel",
                                                                       "salary"][j % 5] for j in range(i))])
            for i in range(30)]
    store.commit()
    for round_ in range(60):  # 60 commits, each relabelling every document
        for i, doc in enumerate(docs):
            store.set_acl(doc.id, ("public",) if (i + round_) % 3 else ("group:hr",))
        store.commit()
    reader = opener(tmp_path, writable=False)
    vectors = {d.id: store.vectors_for([c.text_hash for c in store.chunks_of(d.id)]) for d in docs}
    flat = {d.id: next(iter(vectors[d.id].values())) for d in docs}
    for text in ("topic 3 policy", "salary audit", "travel memo memo", "topic 29"):
        q = EMB.embed_query(text)
        exact = sorted((round(float(np.dot(v, q)), 4) for v in flat.values()), reverse=True)
        every = SearchFilter(document_ids=frozenset(flat))
        for k in (1, 3, 10):  # the k best scores (equal scores may come in either order)
            assert [round(h.score, 4) for h in reader.search(q, k)] == exact[:k]
            assert [round(h.score, 4) for h in reader.search(q, k, every)] == exact[:k]


def test_a_closed_writer_frees_the_index_for_the_next_one_at_once(opener, pg_server, tmp_path):
    """The service opens a writer per administrator request: the next request's writer must never find the
    lock still held by the last one's ending session (the server drops a closed session's locks only once its
    backend has exited; the writer now unlocks before it closes)."""
    import psycopg

    from index.postgres.store import lock_key

    for i in range(30):
        writer = opener(tmp_path)
        put(writer, f"/d/{i}.txt", [f"text {i}"])
        writer.commit()
        writer.close()
        with psycopg.connect(pg_server, autocommit=True) as conn:
            held = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                                "((classid::bigint << 32) | objid::bigint) = %s",
                                [lock_key(schema_for(tmp_path))]).fetchone()[0]
        assert held == 0, f"round {i}: the lock outlived close()"
