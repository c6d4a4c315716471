"""The SQLite side of the embedded store: schema, columns and row conversion."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from index.records import ChunkRecord, DocumentRecord

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
