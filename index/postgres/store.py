"""The index in PostgreSQL with pgvector: the same contract as the embedded store (tests/index/contract.py).

Generations and consistent reads. `meta.generation` is raised in the writer's transaction that holds the
batch, so a batch becomes visible whole, with its generation, at COMMIT. Each read runs in a REPEATABLE READ
READ ONLY transaction of its own (one snapshot: one generation, whatever commits meanwhile); a reader never
blocks the writer. One writer at a time: a session advisory lock keyed by the schema, held while the writer is
open (another writer gets IndexLockedError naming the holder's process). Uncommitted changes vanish on
rollback, on close and when the writer's connection dies.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np

from index import keyword
from index.errors import IndexCorruptError, IndexLockedError, IndexMismatchError, IndexWriteError, QuelleError
from index.postgres import schema as ddl
from index.postgres import search
from index.records import ChunkRecord, DocumentRecord, Hit
from index.store import Retrieved, SearchFilter, StoreConfig, StoreStats

log = logging.getLogger(__name__)


def connect(config: StoreConfig, *, role: str) -> Any:
    """A connection with pgvector's types, named for pg_stat_activity (who holds the writer lock)."""
    import psycopg
    from pgvector.psycopg import register_vector

    assert config.pg_dsn
    try:
        conn = psycopg.connect(config.pg_dsn, autocommit=True,
                               application_name=f"quelle {role} pid {os.getpid()} on {socket.gethostname()}")
    except psycopg.Error as exc:
        raise QuelleError(f"cannot connect to {config.where}: {str(exc).strip()}") from None
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.Error as exc:
        conn.close()
        raise QuelleError(f"{config.where} has no pgvector extension, or this user may not create it "
                          f"(CREATE EXTENSION vector, as a superuser, once): {str(exc).strip()}") from None
    register_vector(conn)
    return conn


def lock_key(schema: str) -> int:
    """The advisory-lock key of an index: a stable 63-bit number from its schema's name."""
    return int.from_bytes(hashlib.sha256(f"quelle writer {schema}".encode()).digest()[:8], "big") >> 1


def holder(conn: Any, schema: str) -> str:
    """" (pid N: application name)" of the session holding the writer lock, or ""."""
    row = conn.execute(
        "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
        [lock_key(schema)]).fetchone()
    return f" (server pid {row[0]}: {row[1]})" if row else ""


def locked(config: StoreConfig, conn: Any) -> IndexLockedError:
    return IndexLockedError(f"the index in {config.where}, schema {config.pg_schema}, is being written by another "
                            f"process{holder(conn, config.pg_schema)}; retry when it is done")


def read_meta(conn: Any, schema: str) -> dict[str, str]:
    exists = conn.execute("SELECT to_regclass(%s)", [f"{schema}.meta"]).fetchone()[0]
    if exists is None:
        return {}
    return dict(conn.execute(f"SELECT key, value FROM {schema}.meta").fetchall())


def mismatch(config: StoreConfig, recorded: str, recorded_dim: int, model_id: str, dim: int | None
             ) -> IndexMismatchError:
    return IndexMismatchError(
        f"the index in {config.where}, schema {config.pg_schema}, was built with embedding model {recorded!r} "
        f"(dim {recorded_dim}); this run uses {model_id!r} (dim {dim}). Use the same model "
        f"(QUELLE_EMBEDDING_MODEL={recorded}) or another QUELLE_PG_SCHEMA.")


class PostgresStore:
    def __init__(self, config: StoreConfig, *, model_id: str | None, dim: int | None, writable: bool) -> None:
        self.config = config
        self.schema = config.pg_schema
        self.writable = writable
        self._local = threading.local()
        self._conns: list[Any] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self._in_txn = False
        self._stats_cache: OrderedDict[tuple[int, SearchFilter | None], tuple[float, float]] = OrderedDict()
        self._db = connect(config, role="writer" if writable else "reader")
        self._conns.append(self._db)
        try:
            self._open(model_id, dim)
        except BaseException:
            self._db.close()
            raise

    # -- opening -------------------------------------------------------------------------------------------
    def _open(self, model_id: str | None, dim: int | None) -> None:
        s = self.schema
        if self.writable:
            got = self._db.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(s)]).fetchone()[0]
            if not got:
                raise locked(self.config, self._db)
            self._create(model_id, dim)
        meta = read_meta(self._db, s)
        if not meta:
            raise IndexCorruptError(f"no index in {self.config.where}, schema {s} (run `quelle ingest` first)")
        self.model_id: str = meta["model_id"]
        self.dim: int = int(meta["dim"])
        self.keyword_analyzer: str = meta["keyword_analyzer"]
        if model_id is not None and (model_id != self.model_id or (dim is not None and dim != self.dim)):
            raise mismatch(self.config, self.model_id, self.dim, model_id, dim)
        analyzer = self.config.keyword_analyzer if self.writable else None
        if analyzer is not None and analyzer != self.keyword_analyzer:
            raise IndexMismatchError(
                f"the index in {self.config.where}, schema {s}, uses keyword analyzer {self.keyword_analyzer!r}, "
                f"not {analyzer!r}: set QUELLE_KEYWORD_ANALYZER={self.keyword_analyzer} or use another schema")
        self._migrate()
        self._generation = int(meta["generation"])
        if self.writable:
            self._db.autocommit = False

    def _create(self, model_id: str | None, dim: int | None) -> None:
        """A new index's schema and manifest (nothing when it exists; the writer holds the lock)."""
        s = self.schema
        if read_meta(self._db, s) or model_id is None or dim is None:
            return
        with self._db.transaction():
            self._db.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            self._db.execute(ddl.create_meta(s))
            rows = {"model_id": model_id, "dim": str(dim), "generation": "0", "schema_step": "0",
                    "keyword_analyzer": self.config.keyword_analyzer or keyword.ANALYZER}
            self._db.cursor().executemany(f"INSERT INTO {s}.meta VALUES (%s, %s)", list(rows.items()))

    def _migrate(self) -> None:
        """The writer runs the schema steps this index has not had yet, each in its own transaction, under a
        transaction advisory lock so that two processes opening it at once run each step once."""
        s = self.schema
        done = int(read_meta(self._db, s).get("schema_step", "0"))
        if done > len(ddl.STEPS):
            raise IndexMismatchError(f"the index in {self.config.where}, schema {s}, was made by a newer Quelle "
                                     f"(schema step {done}, this one knows {len(ddl.STEPS)}): upgrade Quelle")
        pending = ddl.steps_after(done)
        if pending and not self.writable:  # a reader changes nothing (it may run on a read-only replica)
            raise IndexMismatchError(
                f"the index in {self.config.where}, schema {s}, needs schema steps {pending[0][0]} to "
                f"{pending[-1][0]} of this Quelle: run `quelle ingest` once (a writer applies them)")
        for number, name, sql in pending:
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(s) ^ 1])
                now = int(read_meta(self._db, s)["schema_step"])
                if now >= number:
                    continue
                log.info("index schema %s: step %d (%s)", s, number, name)
                self._db.execute(sql.format(s=s, dim=self.dim))
                self._db.execute(f"UPDATE {s}.meta SET value = %s WHERE key = 'schema_step'", [str(number)])

    # -- consistent reads ----------------------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[Any]:
        """A cursor inside one snapshot (REPEATABLE READ READ ONLY), or, for the writer, inside its own
        transaction (it reads its uncommitted changes)."""
        if self.writable:
            yield self._db.cursor()
            return
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = connect(self.config, role="reader")
            from psycopg import IsolationLevel

            conn.autocommit = False
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        try:
            with conn.cursor() as cur:
                yield cur
        finally:
            conn.rollback()  # a read-only snapshot: nothing to keep

    def _seen(self, cur: Any) -> int:
        generation = int(cur.execute(f"SELECT value FROM {self.schema}.meta WHERE key = 'generation'").fetchone()[0])
        if not self.writable:
            self._generation = generation
        return generation

    @property
    def generation(self) -> int:
        return self._generation

    def refresh(self) -> int:
        with self._read() as cur:
            return self._seen(cur)

    # -- reading -------------------------------------------------------------------------------------------
    def _doc(self, sql: str, value: str) -> DocumentRecord | None:
        with self._read() as cur:
            row = cur.execute(f"SELECT {ddl.DOC_COLS} FROM {self.schema}.documents WHERE {sql} = %s",
                              [value]).fetchone()
        return ddl.doc_from_row(row) if row else None

    def document(self, doc_id: str) -> DocumentRecord | None:
        return self._doc("id", doc_id)

    def document_by_source(self, source: str) -> DocumentRecord | None:
        return self._doc("source", source)

    def documents(self, offset: int = 0, limit: int = 100,
                  principals: frozenset[str] | None = None) -> tuple[list[DocumentRecord], int]:
        cond, params = ("acl && %s::text[]", [sorted(principals)]) if principals is not None else ("TRUE", [])
        with self._read() as cur:
            rows = cur.execute(f"SELECT {ddl.DOC_COLS} FROM {self.schema}.documents WHERE {cond} "
                               "ORDER BY source LIMIT %s OFFSET %s", [*params, limit, offset]).fetchall()
            total = cur.execute(f"SELECT count(*) FROM {self.schema}.documents WHERE {cond}", params).fetchone()[0]
        return [ddl.doc_from_row(r) for r in rows], int(total)

    def readable(self, doc_ids: Iterable[str], principals: frozenset[str]) -> set[str]:
        ids = sorted(set(doc_ids))
        if not ids or not principals:
            return set()
        with self._read() as cur:
            return {r[0] for r in cur.execute(
                f"SELECT id FROM {self.schema}.documents WHERE id = ANY(%s) AND acl && %s::text[]",
                [ids, sorted(principals)])}

    def chunks_of(self, doc_id: str) -> list[ChunkRecord]:
        with self._read() as cur:
            rows = cur.execute(f"SELECT {ddl.CHUNK_COLS} FROM {self.schema}.chunks c WHERE c.document_id = %s "
                               "ORDER BY c.ordinal", [doc_id]).fetchall()
        return [ddl.chunk_from_row(r) for r in rows]

    def sources(self) -> list[str]:
        with self._read() as cur:
            return [r[0] for r in cur.execute(f"SELECT source FROM {self.schema}.documents ORDER BY source")]

    def vectors_for(self, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        wanted = list(dict.fromkeys(text_hashes))
        if not wanted:
            return {}
        with self._read() as cur:
            rows = cur.execute(f"SELECT DISTINCT ON (c.text_hash) c.text_hash, v.embedding FROM {self.schema}.chunks c "
                               f"JOIN {self.schema}.vectors v ON v.rowid = c.rowid WHERE c.text_hash = ANY(%s) "
                               "ORDER BY c.text_hash, c.rowid", [wanted]).fetchall()
        return {th: np.asarray(vec.to_numpy() if hasattr(vec, "to_numpy") else vec, dtype=np.float32)
                for th, vec in rows}

    def search(self, query: np.ndarray, k: int, flt: SearchFilter | None = None) -> list[Hit]:
        return self.retrieve(query, None, k, flt).dense

    def retrieve(self, query: np.ndarray | None, keywords: str | None, k: int,
                 flt: SearchFilter | None = None) -> Retrieved:
        if flt is not None and flt.document_ids is not None and not flt.document_ids:
            return Retrieved([], [], self.refresh())
        with self._read() as cur:
            generation = self._seen(cur)
            dense = search.dense(cur, self.schema, query, k, flt) if query is not None else []
            kw = []
            if keywords:
                kw = search.keyword(cur, self.schema, keywords, k, flt, self.keyword_analyzer,
                                    self._collection(cur, generation, flt))
        return Retrieved(dense, kw, generation)

    def _collection(self, cur: Any, generation: int, flt: SearchFilter | None) -> tuple[float, float]:
        """BM25's statistics of what a filter allows, kept for the last few (generation, filter) pairs: a
        caller's access filter repeats from request to request, and any commit is a new generation. The writer
        sees its own uncommitted changes under an unchanged generation: never kept."""
        if self.writable:
            return search.collection(cur, self.schema, flt)
        key = (generation, flt)
        with self._conns_lock:
            found = self._stats_cache.get(key)
            if found is not None:
                self._stats_cache.move_to_end(key)
                return found
        got = search.collection(cur, self.schema, flt)
        with self._conns_lock:
            self._stats_cache[key] = got
            while len(self._stats_cache) > 16:
                self._stats_cache.popitem(last=False)
        return got

    def stats(self) -> StoreStats:
        s = self.schema
        with self._read() as cur:
            generation = self._seen(cur)
            docs = cur.execute(f"SELECT count(*) FROM {s}.documents").fetchone()[0]
            chunks = cur.execute(f"SELECT count(*) FROM {s}.chunks").fetchone()[0]
            size = cur.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                [s]).fetchone()[0]
        return StoreStats(int(docs), int(chunks), self.model_id, self.dim, generation, int(size),
                          f"{ddl.HNSW},ef_search={search.EF_SEARCH}")

    # -- writing -------------------------------------------------------------------------------------------
    def _begin(self) -> Any:
        if not self.writable:
            raise IndexLockedError(f"the index in {self.config.where} was opened read-only")
        self._in_txn = True
        return self._db.cursor()

    def put(self, doc: DocumentRecord, chunks: Sequence[ChunkRecord], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        s = self.schema
        cur = self._begin()
        self.delete(doc.id)
        cur.execute(f"INSERT INTO {s}.documents ({ddl.DOC_COLS}, n_chunks) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", ddl.doc_params(doc, len(chunks)))
        if not chunks:
            return
        counts = [Counter(keyword.terms(c.embed_text, analyzer=self.keyword_analyzer)) for c in chunks]
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        cur.executemany(
            f"INSERT INTO {s}.chunks (id, document_id, ordinal, text, text_hash, page, heading_path, char_start, "
            "char_end, n_tokens, acl, n_terms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING rowid",
            [ddl.chunk_params(c, doc.acl, sum(n.values())) for c, n in zip(chunks, counts, strict=True)],
            returning=True)
        rowids = []
        while True:
            rowids.append(cur.fetchone()[0])
            if not cur.nextset():
                break
        cur.executemany(f"INSERT INTO {s}.vectors (rowid, embedding) VALUES (%s, %s)",
                        list(zip(rowids, vecs, strict=True)))
        with cur.copy(f"COPY {s}.postings (term, chunk, tf, n_terms) FROM STDIN") as copy:
            for rowid, n in zip(rowids, counts, strict=True):
                length = sum(n.values())
                for term, tf in n.items():
                    copy.write_row((term, rowid, tf, length))

    def delete(self, doc_id: str) -> bool:
        cur = self._begin()
        cur.execute(f"DELETE FROM {self.schema}.documents WHERE id = %s", [doc_id])
        return bool(cur.rowcount > 0)

    def set_acl(self, doc_id: str, acl: tuple[str, ...]) -> bool:
        cur = self._begin()
        cur.execute(f"UPDATE {self.schema}.documents SET acl = %s WHERE id = %s", [list(acl), doc_id])
        if cur.rowcount == 0:
            return False
        cur.execute(f"UPDATE {self.schema}.chunks SET acl = %s WHERE document_id = %s", [list(acl), doc_id])
        return True

    def commit(self) -> int:
        """Publish the batch as one new generation; on failure nothing of it is kept (IndexWriteError) and the
        previous generation stays the current one."""
        import psycopg

        if not self._in_txn:
            return self._generation
        nxt = self._generation + 1
        try:
            self._db.execute(f"UPDATE {self.schema}.meta SET value = %s WHERE key = 'generation'", [str(nxt)])
            self._db.commit()
        except psycopg.Error as exc:
            self._in_txn = False
            with suppress(psycopg.Error):
                self._db.rollback()
            raise IndexWriteError(
                f"could not commit generation {nxt} of the index in {self.config.where}: {str(exc).strip()}; "
                f"generation {self._generation} is intact and this batch was not saved") from exc
        self._in_txn = False
        self._generation = nxt
        return nxt

    def rollback(self) -> None:
        if self.writable and not self._db.closed:
            self._db.rollback()
        self._in_txn = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        import psycopg

        try:
            with suppress(psycopg.Error):  # a session the server already ended has nothing to undo or release
                self._release()
        finally:
            with self._conns_lock:
                for conn in self._conns:
                    conn.close()

    def _release(self) -> None:
        self.rollback()
        if self.writable and not self._db.closed:
            # released now: the server drops a closed session's locks only when its backend has exited, and
            # the next writer (often the very next request) would be refused meanwhile
            self._db.execute("SELECT pg_advisory_unlock(%s)", [lock_key(self.schema)])
            self._db.commit()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
