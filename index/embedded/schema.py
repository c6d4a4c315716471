"""The SQLite side of the embedded store: schema, migrations, columns, row conversion, and the rows a filter
allows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np

from index.records import ChunkRecord, DocumentRecord, Hit, collapse
from index.store import SearchFilter

SCHEMA_VERSION = "1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY, source TEXT NOT NULL UNIQUE, title TEXT NOT NULL, kind TEXT NOT NULL,
    content_hash TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, pages INTEGER,
    warnings TEXT NOT NULL DEFAULT '[]', n_chunks INTEGER NOT NULL, acl TEXT NOT NULL DEFAULT '["public"]'
);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, text TEXT NOT NULL, text_hash TEXT NOT NULL, page INTEGER,
    heading_path TEXT NOT NULL, char_start INTEGER NOT NULL, char_end INTEGER NOT NULL, n_tokens INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE INDEX IF NOT EXISTS chunks_text_hash ON chunks(text_hash);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(terms, tokenize = 'unicode61 remove_diacritics 0');
"""

DOC_COLS = "id, source, title, kind, content_hash, size, mtime_ns, pages, warnings, acl"
# added after schema 1: (column, definition) applied to older indexes when they are opened
MIGRATIONS = (("documents", "acl", "TEXT NOT NULL DEFAULT '[\"public\"]'"),)
CHUNK_COLS = (
    "c.rowid, c.id, c.document_id, c.ordinal, c.text, c.page, c.heading_path, c.char_start, c.char_end, c.n_tokens"
)
# a chunk row joined with what a hit needs: CHUNK_COLS, then text_hash, source, title
HIT_SELECT = (
    f"SELECT {CHUNK_COLS}, c.text_hash, d.source, d.title FROM chunks c JOIN documents d ON d.id = c.document_id"
)


def chunk_from_row(row: Sequence[Any]) -> ChunkRecord:
    return ChunkRecord(
        id=row[1], document_id=row[2], ordinal=row[3], text=row[4], page=row[5],
        heading_path=tuple(json.loads(row[6])), char_start=row[7], char_end=row[8], n_tokens=row[9],
    )


def doc_from_row(row: Sequence[Any]) -> DocumentRecord:
    return DocumentRecord(
        id=row[0], source=row[1], title=row[2], kind=row[3], content_hash=row[4], size=row[5],
        mtime_ns=row[6], pages=row[7], warnings=tuple(json.loads(row[8])), acl=tuple(json.loads(row[9])),
    )


def doc_params(doc: DocumentRecord, n_chunks: int) -> tuple:
    return (doc.id, doc.source, doc.title, doc.kind, doc.content_hash, doc.size, doc.mtime_ns, doc.pages,
            json.dumps(list(doc.warnings), ensure_ascii=False), json.dumps(list(doc.acl)), n_chunks)


def chunk_params(c: ChunkRecord) -> tuple:
    return (c.id, c.document_id, c.ordinal, c.text, c.text_hash, c.page,
            json.dumps(list(c.heading_path), ensure_ascii=False), c.char_start, c.char_end, c.n_tokens)


def acl_clause(table: str, principals: frozenset[str]) -> tuple[str, list[str]]:
    """SQL (and its parameters) true for a row of `table` whose access list holds one of `principals`."""
    marks = ",".join("?" * len(principals))
    return f"EXISTS (SELECT 1 FROM json_each({table}.acl) a WHERE a.value IN ({marks}))", sorted(principals)


def allowed_rowids(db: sqlite3.Connection, flt: SearchFilter) -> np.ndarray:
    """The chunk rowids a (non-empty) filter allows, in order."""
    where: list[str] = []
    params: list[Any] = []
    if flt.document_ids is not None:
        where.append(f"d.id IN ({','.join('?' * len(flt.document_ids))})")
        params += sorted(flt.document_ids)
    if flt.kinds is not None:
        where.append(f"d.kind IN ({','.join('?' * len(flt.kinds))})")
        params += sorted(flt.kinds)
    if flt.source_prefix is not None:
        where.append("substr(d.source, 1, ?) = ?")
        params += [len(flt.source_prefix), flt.source_prefix]
    if flt.principals is not None:
        clause, names = acl_clause("d", flt.principals)
        where.append(clause)
        params += names
    rows = db.execute(
        "SELECT c.rowid FROM chunks c JOIN documents d ON d.id = c.document_id WHERE " + " AND ".join(where)
        + " ORDER BY c.rowid", params,
    ).fetchall()
    return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))


def hits(db: sqlite3.Connection, pairs: list[tuple[int, float]], k: int) -> list[Hit]:
    """The first `k` distinct passages of `pairs` (rowid, score), best first: a passage found again at another
    path is one hit listing the other sources. Whole rows are read only for the hits kept (a search asks for
    twice the candidates it returns, to have k after collapsing)."""
    if not pairs:
        return []
    marks = ",".join("?" * len(pairs))
    text_hash = dict(db.execute(f"SELECT rowid, text_hash FROM chunks WHERE rowid IN ({marks})",
                                [i for i, _ in pairs]).fetchall())
    kept, also = collapse(pairs, text_hash, k)
    wanted = [r for r, _ in kept] + [d for ds in also.values() for d in ds]
    marks = ",".join("?" * len(wanted))
    rows = {r[0]: r for r in db.execute(f"{HIT_SELECT} WHERE c.rowid IN ({marks})", wanted)}
    return [Hit(chunk_from_row(rows[r]), score, rows[r][11], rows[r][12], tuple(rows[d][11] for d in also[r]))
            for r, score in kept]
