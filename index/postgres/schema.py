"""The PostgreSQL side of the index: its tables in one schema, the steps that build and migrate them, and row
conversion.

Every change to the tables is a new step at the end of `STEPS`, never an edit of an old one: a new index runs
them all, an older one the steps after the one its `meta.schema_step` records, each in a transaction of its
own under an advisory lock, so two processes opening the same old index migrate it once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from index.records import ChunkRecord, DocumentRecord

# (what it does, its SQL: {s} is the schema, {dim} the vectors' dimension)
STEPS: tuple[tuple[str, str], ...] = (
    ("tables", """
        CREATE TABLE {s}.documents (
            id text PRIMARY KEY, source text NOT NULL UNIQUE, title text NOT NULL, kind text NOT NULL,
            content_hash text NOT NULL, size bigint NOT NULL, mtime_ns bigint NOT NULL, pages integer,
            warnings jsonb NOT NULL DEFAULT '[]', acl text[] NOT NULL DEFAULT '{{public}}', n_chunks integer NOT NULL
        );
        CREATE TABLE {s}.chunks (
            rowid bigserial PRIMARY KEY, id text NOT NULL UNIQUE,
            document_id text NOT NULL REFERENCES {s}.documents(id) ON DELETE CASCADE,
            ordinal integer NOT NULL, text text NOT NULL, text_hash text NOT NULL, page integer,
            heading_path jsonb NOT NULL, char_start integer NOT NULL, char_end integer NOT NULL,
            n_tokens integer NOT NULL,
            acl text[] NOT NULL,  -- the document's, on each chunk: the access filter joins no other table
            n_terms integer NOT NULL  -- keyword terms, for BM25's length normalisation
        );
        -- the vectors apart from the rows that change (an access list): an update of a chunk never adds a node
        -- to the HNSW graph (each non-HOT update did, and searches lost recall among the dead versions)
        CREATE TABLE {s}.vectors (
            rowid bigint PRIMARY KEY REFERENCES {s}.chunks(rowid) ON DELETE CASCADE,
            embedding vector({dim}) NOT NULL
        );
        CREATE INDEX chunks_document ON {s}.chunks (document_id);
        CREATE INDEX chunks_text_hash ON {s}.chunks (text_hash);
        -- BM25's postings: each chunk's terms (cut by Quelle's own analyzers) and how often each occurs
        CREATE TABLE {s}.postings (
            term text NOT NULL, chunk bigint NOT NULL REFERENCES {s}.chunks(rowid) ON DELETE CASCADE,
            tf integer NOT NULL,
            n_terms integer NOT NULL,  -- the chunk's length, here too: an unfiltered search reads postings only
            PRIMARY KEY (term, chunk)
        );
        CREATE INDEX postings_chunk ON {s}.postings (chunk);
    """),
    ("access index", "CREATE INDEX chunks_acl ON {s}.chunks USING gin (acl);"),
    ("vector index", "CREATE INDEX vectors_embedding ON {s}.vectors USING hnsw (embedding vector_ip_ops) "
                     "WITH (m = 16, ef_construction = 64);"),
)

HNSW = "hnsw(m=16,ef_construction=64)"

DOC_COLS = "id, source, title, kind, content_hash, size, mtime_ns, pages, warnings, acl"
CHUNK_COLS = "c.rowid, c.id, c.document_id, c.ordinal, c.text, c.page, c.heading_path, c.char_start, c.char_end, " \
             "c.n_tokens"


def create_meta(schema: str) -> str:
    return f"CREATE TABLE IF NOT EXISTS {schema}.meta (key text PRIMARY KEY, value text NOT NULL)"


def steps_after(done: int) -> list[tuple[int, str, str]]:
    """(number, name, SQL) of the steps an index at step `done` still needs, in order."""
    return [(i, name, sql) for i, (name, sql) in enumerate(STEPS, start=1) if i > done]


def doc_from_row(row: Sequence[Any]) -> DocumentRecord:
    return DocumentRecord(id=row[0], source=row[1], title=row[2], kind=row[3], content_hash=row[4], size=row[5],
                          mtime_ns=row[6], pages=row[7], warnings=tuple(row[8]), acl=tuple(row[9]))


def doc_params(doc: DocumentRecord, n_chunks: int) -> tuple[Any, ...]:
    return (doc.id, doc.source, doc.title, doc.kind, doc.content_hash, doc.size, doc.mtime_ns, doc.pages,
            json.dumps(list(doc.warnings), ensure_ascii=False), list(doc.acl), n_chunks)


def chunk_from_row(row: Sequence[Any]) -> ChunkRecord:
    return ChunkRecord(id=row[1], document_id=row[2], ordinal=row[3], text=row[4], page=row[5],
                       heading_path=tuple(row[6]), char_start=row[7], char_end=row[8], n_tokens=row[9])


def chunk_params(c: ChunkRecord, acl: Sequence[str], n_terms: int) -> tuple[Any, ...]:
    return (c.id, c.document_id, c.ordinal, c.text, c.text_hash, c.page,
            json.dumps(list(c.heading_path), ensure_ascii=False), c.char_start, c.char_end, c.n_tokens, list(acl),
            n_terms)

