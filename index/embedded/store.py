"""The embedded store: FAISS for vectors, SQLite for documents, chunks, keyword terms and the manifest.

Crash safety. SQLite (WAL, synchronous=FULL) is the manifest: its `meta` table names the FAISS file of the
current generation. A commit
  1. writes the vectors to a new file `vectors/g<N+1>.faiss` (written aside, fsynced, renamed, folder fsynced),
  2. commits, in ONE SQLite transaction, every document, chunk and keyword change with generation = N+1,
  3. deletes FAISS files older than the previous generation.
A process killed before step 2 leaves generation N (its file is untouched); killed after it, N+1. Either way
the FAISS vector count equals the chunk rows. Opening for writing removes files no generation names.

Readers (a read-only store, e.g. the service) never block the writer and never see a torn state: each read
runs in one SQLite read transaction and uses the FAISS index of the generation that transaction sees,
loading a newer generation when one was committed since (no restart needed).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index import keyword
from index.embedded import keyword as keyword_search
from index.embedded import manifest, schema, vectors
from index.embedded.manifest import fsync_dir, publish
from index.embedded.schema import (
    CHUNK_COLS,
    DOC_COLS,
    MIGRATIONS,
    SCHEMA,
    chunk_from_row,
    chunk_params,
    doc_from_row,
    doc_params,
)
from index.errors import IndexCorruptError, IndexLockedError, IndexMismatchError, IndexWriteError
from index.records import ChunkRecord, DocumentRecord, Hit
from index.store import Retrieved, SearchFilter, StoreStats

log = logging.getLogger(__name__)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{os.strerror(exc.errno)} (errno {errno.errorcode.get(exc.errno, exc.errno)})"
    return str(exc) or type(exc).__name__


class _Stale(Exception):
    """The generation a read transaction sees was superseded twice while it loaded: read again."""


class FaissSqliteStore:
    """One data directory: `quelle.sqlite`, `vectors/g<N>.faiss`, `writer.lock`."""

    def __init__(self, data_dir: Path, *, model_id: str | None, dim: int | None, writable: bool,
                 keyword_analyzer: str | None = None, vector_policy: vectors.VectorPolicy | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.writable = writable
        self.vector_policy = vector_policy or vectors.VectorPolicy()
        self._db_path = self.data_dir / manifest.DATABASE
        self._lock_fd: int | None = None
        self._in_txn = False
        self._closed = False
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._load_lock = threading.Lock()
        self._allowed_cache: OrderedDict[tuple[int, SearchFilter], _Allowed] = OrderedDict()
        if not writable and not self._db_path.exists():
            raise IndexCorruptError(f"no index at {self.data_dir} (run `quelle ingest` first)")
        if writable:
            (self.data_dir / "vectors").mkdir(parents=True, exist_ok=True)
            self._lock_fd = manifest.take_writer_lock(self.data_dir)
        try:
            self._db = self._connect()
            self._open(model_id, dim, keyword_analyzer)
        except BaseException:
            for conn in self._conns:
                conn.close()
            self._release_lock()
            raise

    # -- opening -------------------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._db_path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        self._conns.append(conn)
        return conn

    def _open(self, model_id: str | None, dim: int | None, analyzer: str | None) -> None:
        if self.writable:
            self._db.executescript(SCHEMA)
            manifest.init_meta(self._db, model_id, dim, analyzer or keyword.ANALYZER)
        self._migrate()
        meta = manifest.read_meta(self._db)
        if not meta:
            raise IndexCorruptError(f"the index at {self.data_dir} has no metadata (never initialised)")
        self.model_id: str = meta["model_id"]
        self.dim: int = int(meta["dim"])
        self.keyword_analyzer: str = meta.get("keyword_analyzer", keyword.LEGACY_ANALYZER)
        self._check_model(model_id, dim)
        if analyzer is not None and analyzer != self.keyword_analyzer:
            raise IndexMismatchError(
                f"the index at {self.data_dir} uses keyword analyzer {self.keyword_analyzer!r}, not {analyzer!r}: "
                f"set QUELLE_KEYWORD_ANALYZER={self.keyword_analyzer} or use another --data-dir")
        self._db.execute("BEGIN")
        try:
            self.generation, self._index = self._load(self._db)
        finally:
            self._db.execute("COMMIT")
        if self.writable:
            self._remove_orphans()

    def _migrate(self) -> None:
        """Columns added since schema 1 (document access lists), with their defaults; one ALTER each, atomic
        in SQLite, so a reader may apply it too and two processes racing both end with the column."""
        for table, column, definition in MIGRATIONS:
            columns = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if columns and column not in columns:
                try:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                except sqlite3.OperationalError as exc:
                    if "duplicate column" not in str(exc):
                        raise

    def set_acl(self, doc_id: str, acl: tuple[str, ...]) -> bool:
        """Replace a document's access list (visible at the next commit). False: no such document."""
        self._begin()
        return self._db.execute("UPDATE documents SET acl = ? WHERE id = ?",
                                (json.dumps(list(acl)), doc_id)).rowcount > 0

    def _check_model(self, model_id: str | None, dim: int | None) -> None:
        if model_id is not None and (model_id != self.model_id or (dim is not None and dim != self.dim)):
            raise manifest.mismatch(self.data_dir, self.model_id, self.dim, model_id, dim)

    def _load(self, db: sqlite3.Connection) -> tuple[int, Any]:
        """The generation `db`'s open transaction sees, and its FAISS index, checked against the chunk rows."""
        meta = manifest.read_meta(db)
        generation = int(meta["generation"])
        n_chunks = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        index: Any
        if not meta["faiss_file"]:
            index = vectors.flat(int(meta["dim"]))
        else:
            path = self.data_dir / "vectors" / meta["faiss_file"]
            if not path.exists() and not self.writable:
                raise _Stale(str(path))
            try:  # a reader maps the file (it never changes it): ready at once, pages shared with other readers
                index = vectors.read(path, mmap=not self.writable)
            except RuntimeError as exc:
                raise IndexCorruptError(f"generation {generation}: cannot read {path}: {exc}") from None
        if index.ntotal != n_chunks:
            raise IndexCorruptError(
                f"generation {generation} at {self.data_dir} holds {index.ntotal} vectors but {n_chunks} chunks"
            )
        return generation, index

    def _remove_orphans(self) -> None:
        meta = manifest.read_meta(self._db)
        keep = {meta["faiss_file"], meta["previous_faiss_file"]}
        for path in (self.data_dir / "vectors").iterdir():
            if path.name not in keep:
                path.unlink()

    # -- consistent reads ----------------------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[tuple[sqlite3.Connection, Any, int]]:
        """(connection inside a read transaction, FAISS index of the generation that transaction sees, that
        generation). The three always belong together: another thread may load a newer generation meanwhile."""
        if self.writable:  # the writer reads its own uncommitted state
            yield self._db, self._index, self.generation
            return
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        for attempt in range(5):
            db.execute("BEGIN")
            try:
                generation = int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
                with self._load_lock:  # compare and take the shared index at once: never another generation's
                    if generation != self.generation:
                        self.generation, self._index = self._load(db)
                    index = self._index
            except _Stale:
                db.execute("COMMIT")
                if attempt == 4:
                    raise IndexCorruptError(f"{self.data_dir}: the index changed too fast to read") from None
                continue
            try:
                yield db, index, generation
            finally:
                db.execute("COMMIT")
            return

    def refresh(self) -> int:
        """Load the newest committed generation now (reads also do it on their own); returns it."""
        with self._read() as (_, _, generation):
            return generation

    # -- reading -------------------------------------------------------------------------------------------
    def document_by_source(self, source: str) -> DocumentRecord | None:
        with self._read() as (db, _, _):
            row = db.execute(f"SELECT {DOC_COLS} FROM documents WHERE source = ?", (source,)).fetchone()
        return doc_from_row(row) if row else None

    def document(self, doc_id: str) -> DocumentRecord | None:
        with self._read() as (db, _, _):
            row = db.execute(f"SELECT {DOC_COLS} FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return doc_from_row(row) if row else None

    def documents(self, offset: int = 0, limit: int = 100,
                  principals: frozenset[str] | None = None) -> tuple[list[DocumentRecord], int]:
        """A page of documents ordered by source, and the total count; with `principals`, only the documents
        whose access list holds one of them (both the page and the count)."""
        where, params = "", list[str]()
        if principals is not None:
            clause, params = schema.acl_clause("documents", principals)
            where = " WHERE " + clause
        with self._read() as (db, _, _):
            rows = db.execute(f"SELECT {DOC_COLS} FROM documents{where} ORDER BY source LIMIT ? OFFSET ?",
                              (*params, limit, offset)).fetchall()
            total = db.execute(f"SELECT COUNT(*) FROM documents{where}", params).fetchone()[0]
        return [doc_from_row(r) for r in rows], total

    def readable(self, doc_ids: Iterable[str], principals: frozenset[str]) -> set[str]:
        """Those of these documents that exist and whose access list holds one of `principals`."""
        ids = sorted(set(doc_ids))
        if not ids or not principals:
            return set()
        clause, names = schema.acl_clause("documents", principals)
        with self._read() as (db, _, _):
            return {r[0] for r in db.execute(
                f"SELECT id FROM documents WHERE id IN ({','.join('?' * len(ids))}) AND {clause}", [*ids, *names])}

    def chunks_of(self, doc_id: str) -> list[ChunkRecord]:
        with self._read() as (db, _, _):
            rows = db.execute(f"SELECT {CHUNK_COLS} FROM chunks c WHERE c.document_id = ? ORDER BY c.ordinal",
                              (doc_id,)).fetchall()
        return [chunk_from_row(r) for r in rows]

    def sources(self) -> list[str]:
        with self._read() as (db, _, _):
            return [r[0] for r in db.execute("SELECT source FROM documents ORDER BY source")]

    def vectors_for(self, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        wanted = list(dict.fromkeys(text_hashes))
        found: dict[str, np.ndarray] = {}
        with self._read() as (db, index, _):
            for i in range(0, len(wanted), 500):
                part = wanted[i : i + 500]
                marks = ",".join("?" * len(part))
                for rowid, th in db.execute(
                    f"SELECT MIN(rowid), text_hash FROM chunks WHERE text_hash IN ({marks}) GROUP BY text_hash", part
                ):
                    found[th] = index.reconstruct(int(rowid))
        return found

    def search(self, query: np.ndarray, k: int, flt: SearchFilter | None = None) -> list[Hit]:
        return self.retrieve(query, None, k, flt).dense

    def retrieve(
        self, query: np.ndarray | None, keywords: str | None, k: int, flt: SearchFilter | None = None
    ) -> Retrieved:
        with self._read() as (db, index, generation):
            view = self._allowed(db, flt, generation)
            allowed = view.rowids if view is not None else None
            dense = vectors.dense(db, index, query, k, allowed) if query is not None else []
            kw = []
            if keywords:
                # BM25 statistics over what the filter allows (no score shaped by other documents), unless it
                # allows every chunk: then FTS5's own bm25() gives the same scores, faster
                kw = keyword_search.keyword(db, keywords, k, None if view is None or view.everything else allowed,
                                    self.keyword_analyzer, view.mean_terms(db) if view is not None else None)
            return Retrieved(dense, kw, generation)

    def _allowed(self, db: sqlite3.Connection, flt: SearchFilter | None, generation: int) -> _Allowed | None:
        """The chunk rowids a filter allows. A reader keeps the last few per generation: a caller's access
        filter repeats from request to request, and at a million chunks listing its rows costs more than the
        search itself. Any commit (an access list changed, a document added) is a new generation."""
        if flt is None or flt.empty:
            return None
        if self.writable:  # the writer sees its own uncommitted changes under an unchanged generation
            return _Allowed.of(db, flt)
        key = (generation, flt)
        with self._load_lock:
            found = self._allowed_cache.get(key)
            if found is not None:
                self._allowed_cache.move_to_end(key)
                return found
        allowed = _Allowed.of(db, flt)
        with self._load_lock:
            self._allowed_cache[key] = allowed
            while len(self._allowed_cache) > 16:
                self._allowed_cache.popitem(last=False)
        return allowed

    def stats(self) -> StoreStats:
        with self._read() as (db, index, generation):
            docs = db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
            chunks = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            kind = vectors.kind(index)
        size = sum(p.stat().st_size for p in self.data_dir.rglob("*") if p.is_file())
        return StoreStats(docs, chunks, self.model_id, self.dim, generation, size, kind)

    def vector_count(self) -> int:
        with self._read() as (_, index, _):
            return int(index.ntotal)

    def vector_ids(self) -> np.ndarray:
        with self._read() as (_, index, _):
            return vectors.ids_of(index)

    # -- writing -------------------------------------------------------------------------------------------
    def _begin(self) -> None:
        if not self.writable:
            raise IndexLockedError(f"{self.data_dir} was opened read-only")
        if not self._in_txn:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_txn = True

    def put(self, doc: DocumentRecord, chunks: Sequence[ChunkRecord], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        self._begin()
        self.delete(doc.id)
        self._db.execute(f"INSERT INTO documents ({DOC_COLS}, n_chunks) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         doc_params(doc, len(chunks)))
        rowids = []
        for c in chunks:
            cur = self._db.execute(
                "INSERT INTO chunks (id, document_id, ordinal, text, text_hash, page, heading_path, char_start,"
                " char_end, n_tokens) VALUES (?,?,?,?,?,?,?,?,?,?)", chunk_params(c))
            rowids.append(cur.lastrowid)
        self._db.executemany(
            "INSERT INTO chunks_fts (rowid, terms) VALUES (?, ?)",
            [(r, " ".join(keyword.terms(c.embed_text, analyzer=self.keyword_analyzer)))
             for r, c in zip(rowids, chunks, strict=True)],
        )
        if rowids:
            vecs = np.ascontiguousarray(vectors, dtype=np.float32)
            self._index.add_with_ids(vecs, np.asarray(rowids, dtype=np.int64))

    def delete(self, doc_id: str) -> bool:
        self._begin()
        rowids = [r[0] for r in self._db.execute("SELECT rowid FROM chunks WHERE document_id = ?", (doc_id,))]
        if rowids:
            self._index.remove_ids(np.asarray(rowids, dtype=np.int64))
            self._db.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(r,) for r in rowids])
        return self._db.execute("DELETE FROM documents WHERE id = ?", (doc_id,)).rowcount > 0

    def commit(self) -> int:
        """Make every change since the last commit durable and visible at once; returns the new generation.

        Any failure before the SQLite COMMIT (disk full, I/O error while writing, fsyncing or renaming the
        vectors, or in SQLite itself) rolls the whole batch back and raises IndexWriteError: the previous
        generation stays the current one, untouched. Once SQLite has committed, the new generation is durable;
        failing to delete old files after that is only logged (the next writer removes them)."""
        if not self._in_txn:
            return self.generation
        nxt = self.generation + 1
        name = f"g{nxt:010d}.faiss"
        vectors_dir = self.data_dir / "vectors"
        tmp = vectors_dir / (name + ".tmp")
        try:
            meta = manifest.read_meta(self._db)
            self._index = vectors.adapt(self._index, self.vector_policy)  # exact or IVF, by size
            faiss.write_index(self._index, str(tmp))
            publish(tmp, vectors_dir / name)
            self._db.executemany(
                "UPDATE meta SET value = ? WHERE key = ?",
                [(str(nxt), "generation"), (name, "faiss_file"), (meta["faiss_file"], "previous_faiss_file")],
            )
            self._db.execute("COMMIT")
        except (OSError, RuntimeError, sqlite3.Error) as exc:
            previous = self.generation
            self._abort(tmp, vectors_dir / name)
            raise IndexWriteError(
                f"could not commit generation {nxt} of the index at {self.data_dir}: {_reason(exc)}; generation "
                f"{previous} is intact and this batch was not saved (free space or fix the disk, then run again)"
            ) from exc
        self._in_txn = False
        self.generation = nxt
        try:
            for path in vectors_dir.iterdir():
                if path.name not in (name, meta["faiss_file"]):
                    path.unlink()
            fsync_dir(vectors_dir)
        except OSError as exc:
            log.warning("generation %d committed, but old vector files in %s were not removed: %s", nxt,
                        vectors_dir, exc)
        return nxt

    def _abort(self, *unpublished: Path) -> None:
        """After a failed commit: the batch rolled back, the files it wrote removed (best effort), and the
        in-memory index reloaded from the current generation."""
        self._in_txn = False
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._db.execute("BEGIN")
            try:
                self.generation, self._index = self._load(self._db)
            finally:
                self._db.execute("COMMIT")
        except (OSError, RuntimeError, sqlite3.Error) as exc:
            log.warning("after a failed commit the writer could not reload generation %d: %s", self.generation,
                        exc)
        for path in unpublished:
            with suppress(OSError):
                path.unlink(missing_ok=True)

    def rollback(self) -> None:
        if self._in_txn:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._in_txn = False
            self._db.execute("BEGIN")
            try:
                self.generation, self._index = self._load(self._db)
            finally:
                self._db.execute("COMMIT")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.rollback()
        finally:
            for conn in self._conns:
                conn.close()
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> FaissSqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Allowed:
    """The chunks a filter allows in one generation: their rowids (sorted), whether that is every chunk, and
    their mean length in terms (for BM25 over them; computed once, when a keyword search first needs it)."""

    def __init__(self, rowids: np.ndarray, everything: bool) -> None:
        self.rowids, self.everything = rowids, everything
        self._mean: float | None = None

    @classmethod
    def of(cls, db: sqlite3.Connection, flt: SearchFilter) -> _Allowed:
        rowids = schema.allowed_rowids(db, flt)
        return cls(rowids, len(rowids) == db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def mean_terms(self, db: sqlite3.Connection) -> float | None:
        if self.everything:
            return None
        if self._mean is None:
            self._mean = keyword_search.mean_terms(db, self.rowids)
        return self._mean
