"""The embedded store: FAISS for vectors, SQLite for documents, chunks and the generation manifest.

Crash safety. SQLite (WAL, synchronous=FULL) is the manifest: its `meta` table names the FAISS file of the
current generation. A commit
  1. writes the vectors to a new file `vectors/g<N+1>.faiss` (written aside, fsynced, renamed, folder fsynced),
  2. commits, in ONE SQLite transaction, every document and chunk change together with generation = N+1,
  3. deletes FAISS files older than the previous generation.
A process killed before step 2 leaves generation N (its file is untouched); killed after it, N+1. Either way
the FAISS vector count equals the chunk rows. Opening for writing removes files no generation names.
Readers keep working while a writer commits: the previous generation's file stays on disk.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.durable import fsync_dir, publish
from index.errors import IndexCorruptError, IndexLockedError, IndexMismatchError
from index.records import ChunkRecord, DocumentRecord, Hit
from index.store import StoreStats

SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY, source TEXT NOT NULL UNIQUE, title TEXT NOT NULL, kind TEXT NOT NULL,
    content_hash TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, pages INTEGER,
    warnings TEXT NOT NULL DEFAULT '[]', n_chunks INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, text TEXT NOT NULL, text_hash TEXT NOT NULL, page INTEGER,
    heading_path TEXT NOT NULL, char_start INTEGER NOT NULL, char_end INTEGER NOT NULL, n_tokens INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE INDEX IF NOT EXISTS chunks_text_hash ON chunks(text_hash);
"""
_CHUNK_COLS = (
    "c.rowid, c.id, c.document_id, c.ordinal, c.text, c.page, c.heading_path, c.char_start, c.char_end, c.n_tokens"
)


def _chunk_from_row(row: Sequence[Any]) -> ChunkRecord:
    return ChunkRecord(
        id=row[1], document_id=row[2], ordinal=row[3], text=row[4], page=row[5],
        heading_path=tuple(json.loads(row[6])), char_start=row[7], char_end=row[8], n_tokens=row[9],
    )


def _doc_from_row(row: Sequence[Any]) -> DocumentRecord:
    return DocumentRecord(
        id=row[0], source=row[1], title=row[2], kind=row[3], content_hash=row[4], size=row[5],
        mtime_ns=row[6], pages=row[7], warnings=tuple(json.loads(row[8])),
    )


_DOC_COLS = "id, source, title, kind, content_hash, size, mtime_ns, pages, warnings"


class FaissSqliteStore:
    """One data directory: `quelle.sqlite`, `vectors/g<N>.faiss`, `writer.lock`."""

    def __init__(self, data_dir: Path, *, model_id: str | None, dim: int | None, writable: bool) -> None:
        self.data_dir = Path(data_dir)
        self.writable = writable
        self._lock_fd: int | None = None
        self._in_txn = False
        self._closed = False
        db_path = self.data_dir / "quelle.sqlite"
        if not writable and not db_path.exists():
            raise IndexCorruptError(f"no index at {self.data_dir} (run `quelle ingest` first)")
        if writable:
            (self.data_dir / "vectors").mkdir(parents=True, exist_ok=True)
            self._take_writer_lock()
        try:
            self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
            self._open(model_id, dim)
        except BaseException:
            if hasattr(self, "_db"):
                self._db.close()
            self._release_lock()
            raise

    def _open(self, model_id: str | None, dim: int | None) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        if self.writable:
            self._db.executescript(_SCHEMA)
            self._init_meta(model_id, dim)
        meta = self._meta()
        if not meta:
            raise IndexCorruptError(f"the index at {self.data_dir} has no metadata (never initialised)")
        self.model_id: str = meta["model_id"]
        self.dim: int = int(meta["dim"])
        self._check_model(model_id, dim)
        self.generation, self._index = self._load_current()
        if self.writable:
            self._remove_orphans()

    # -- opening -------------------------------------------------------------------------------------------
    def _take_writer_lock(self) -> None:
        fd = os.open(self.data_dir / "writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IndexLockedError(f"{self.data_dir} is being written by another process") from None
        self._lock_fd = fd

    def _meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _init_meta(self, model_id: str | None, dim: int | None) -> None:
        if self._meta() or model_id is None or dim is None:
            return
        rows = {"schema_version": SCHEMA_VERSION, "model_id": model_id, "dim": str(dim),
                "generation": "0", "faiss_file": "", "previous_faiss_file": ""}
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("INSERT INTO meta VALUES (?, ?)", rows.items())
        self._db.execute("COMMIT")

    def _check_model(self, model_id: str | None, dim: int | None) -> None:
        if model_id is not None and (model_id != self.model_id or (dim is not None and dim != self.dim)):
            raise IndexMismatchError(
                f"the index at {self.data_dir} was built with embedding model {self.model_id!r} "
                f"(dim {self.dim}); this run uses {model_id!r} (dim {dim}). Use the same model "
                f"(QUELLE_EMBEDDING_MODEL={self.model_id}) or another --data-dir."
            )

    def _load_current(self) -> tuple[int, Any]:
        # one read transaction: the generation, its file name and the chunk count belong together
        self._db.execute("BEGIN")
        try:
            meta = self._meta()
            n_chunks = self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        finally:
            self._db.execute("COMMIT")
        generation = int(meta["generation"])
        index: Any
        if not meta["faiss_file"]:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(int(meta["dim"])))
        else:
            path = self.data_dir / "vectors" / meta["faiss_file"]
            try:
                index = faiss.read_index(str(path))
            except RuntimeError as exc:
                raise IndexCorruptError(f"generation {generation}: cannot read {path}: {exc}") from None
        if index.ntotal != n_chunks:
            raise IndexCorruptError(
                f"generation {generation} at {self.data_dir} holds {index.ntotal} vectors "
                f"but {n_chunks} chunks"
            )
        return generation, index

    def _remove_orphans(self) -> None:
        meta = self._meta()
        keep = {meta["faiss_file"], meta["previous_faiss_file"]}
        for path in (self.data_dir / "vectors").iterdir():
            if path.name not in keep:
                path.unlink()

    # -- reading -------------------------------------------------------------------------------------------
    def document_by_source(self, source: str) -> DocumentRecord | None:
        row = self._db.execute(f"SELECT {_DOC_COLS} FROM documents WHERE source = ?", (source,)).fetchone()
        return _doc_from_row(row) if row else None

    def document(self, doc_id: str) -> DocumentRecord | None:
        row = self._db.execute(f"SELECT {_DOC_COLS} FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return _doc_from_row(row) if row else None

    def documents(self, offset: int = 0, limit: int = 100) -> list[DocumentRecord]:
        rows = self._db.execute(
            f"SELECT {_DOC_COLS} FROM documents ORDER BY source LIMIT ? OFFSET ?", (limit, offset)
        ).fetchall()
        return [_doc_from_row(r) for r in rows]

    def chunks_of(self, doc_id: str) -> list[ChunkRecord]:
        rows = self._db.execute(
            f"SELECT {_CHUNK_COLS} FROM chunks c WHERE c.document_id = ? ORDER BY c.ordinal", (doc_id,)
        ).fetchall()
        return [_chunk_from_row(r) for r in rows]

    def sources(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT source FROM documents ORDER BY source")]

    def vectors_for(self, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        wanted = list(dict.fromkeys(text_hashes))
        found: dict[str, np.ndarray] = {}
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            marks = ",".join("?" * len(part))
            for rowid, th in self._db.execute(
                f"SELECT MIN(rowid), text_hash FROM chunks WHERE text_hash IN ({marks}) GROUP BY text_hash", part
            ):
                found[th] = self._index.reconstruct(int(rowid))
        return found

    def search(self, query: np.ndarray, k: int) -> list[Hit]:
        if self._index.ntotal == 0 or k <= 0:
            return []
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        fetch = min(self._index.ntotal, 2 * k)  # identical passages collapse into one hit
        scores, ids = self._index.search(q, fetch)
        pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        rows = self._rows_by_rowid([i for i, _ in pairs])
        hits: list[Hit] = []
        by_text: dict[str, int] = {}
        for rowid, score in pairs:
            row = rows[rowid]
            th = row[10]
            if th in by_text:
                prev = hits[by_text[th]]
                hits[by_text[th]] = Hit(prev.chunk, prev.score, prev.source, prev.title, (*prev.also_in, row[11]))
                continue
            by_text[th] = len(hits)
            hits.append(Hit(_chunk_from_row(row), score, row[11], row[12]))
        return hits[:k]

    def _rows_by_rowid(self, rowids: list[int]) -> dict[int, Sequence[Any]]:
        if not rowids:
            return {}
        marks = ",".join("?" * len(rowids))
        rows = self._db.execute(
            f"SELECT {_CHUNK_COLS}, c.text_hash, d.source, d.title FROM chunks c "
            f"JOIN documents d ON d.id = c.document_id WHERE c.rowid IN ({marks})", rowids
        ).fetchall()
        return {r[0]: r for r in rows}

    def stats(self) -> StoreStats:
        docs = self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        chunks = self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        size = sum(p.stat().st_size for p in self.data_dir.rglob("*") if p.is_file())
        return StoreStats(docs, chunks, self.model_id, self.dim, self.generation, size)

    def vector_count(self) -> int:
        return int(self._index.ntotal)

    def vector_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

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
        self._db.execute(
            f"INSERT INTO documents ({_DOC_COLS}, n_chunks) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (doc.id, doc.source, doc.title, doc.kind, doc.content_hash, doc.size, doc.mtime_ns, doc.pages,
             json.dumps(list(doc.warnings), ensure_ascii=False), len(chunks)),
        )
        rowids = []
        for c in chunks:
            cur = self._db.execute(
                "INSERT INTO chunks (id, document_id, ordinal, text, text_hash, page, heading_path, char_start,"
                " char_end, n_tokens) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (c.id, doc.id, c.ordinal, c.text, c.text_hash, c.page,
                 json.dumps(list(c.heading_path), ensure_ascii=False), c.char_start, c.char_end, c.n_tokens),
            )
            rowids.append(cur.lastrowid)
        if rowids:
            vecs = np.ascontiguousarray(vectors, dtype=np.float32)
            self._index.add_with_ids(vecs, np.asarray(rowids, dtype=np.int64))

    def delete(self, doc_id: str) -> bool:
        self._begin()
        rowids = [r[0] for r in self._db.execute("SELECT rowid FROM chunks WHERE document_id = ?", (doc_id,))]
        if rowids:
            self._index.remove_ids(np.asarray(rowids, dtype=np.int64))
        return self._db.execute("DELETE FROM documents WHERE id = ?", (doc_id,)).rowcount > 0

    def commit(self) -> int:
        if not self._in_txn:
            return self.generation
        meta = self._meta()
        nxt = self.generation + 1
        name = f"g{nxt:010d}.faiss"
        vectors_dir = self.data_dir / "vectors"
        tmp = vectors_dir / (name + ".tmp")
        faiss.write_index(self._index, str(tmp))
        publish(tmp, vectors_dir / name)
        self._db.executemany(
            "UPDATE meta SET value = ? WHERE key = ?",
            [(str(nxt), "generation"), (name, "faiss_file"), (meta["faiss_file"], "previous_faiss_file")],
        )
        self._db.execute("COMMIT")
        self._in_txn = False
        self.generation = nxt
        for path in vectors_dir.iterdir():
            if path.name not in (name, meta["faiss_file"]):
                path.unlink()
        fsync_dir(vectors_dir)
        return nxt

    def rollback(self) -> None:
        if self._in_txn:
            self._db.execute("ROLLBACK")
            self._in_txn = False
            self.generation, self._index = self._load_current()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.rollback()
        finally:
            self._db.close()
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> FaissSqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
