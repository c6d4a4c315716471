"""The storage boundary: what ingestion writes (`StoreWriter`) and what the service, evaluation and the
notebooks read (`StoreReader`), and `open_store(config)`, which picks the backend from configuration.

Backends, each a folder of its own: index/embedded/ (FAISS + SQLite in a data directory, the default) and
index/postgres/ (PostgreSQL with pgvector, when `StoreConfig.pg_dsn` is set). Each passes the same contract
and access-list oracle tests (tests/index/contract.py, tests/index/test_acl_oracle.py). A new backend is a
folder implementing `Backend` plus one line in `backend()`; nothing in ingest/ or service/ names one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from index.records import ChunkRecord, DocumentRecord, Hit
from index.state import StateDb


@dataclass(frozen=True)
class SearchFilter:
    """Which documents a search may look at. Applied before ranking, so top-k is taken among them only."""

    document_ids: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    source_prefix: str | None = None
    # the caller's access tokens ("public", "group:hr", "user:alice"): only documents whose access list holds
    # one of them; None: no access restriction (authentication off, or an administrator)
    principals: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        return (self.document_ids is None and self.kinds is None and self.source_prefix is None
                and self.principals is None)


@dataclass(frozen=True)
class Retrieved:
    """Dense and keyword candidates read from ONE generation of the index."""

    dense: list[Hit]
    keyword: list[Hit]
    generation: int


@dataclass(frozen=True)
class StoreStats:
    documents: int
    chunks: int
    model_id: str
    dim: int
    generation: int
    bytes_on_disk: int
    # "exact", or "ivf<lists>,nprobe=<n>" past the exact-search threshold (index/embedded/vectors.py)
    vector_index: str = "exact"


@dataclass(frozen=True)
class StoreConfig:
    """Where the index lives and how a new one is made (from the service's settings: `Settings.store()`)."""

    data_dir: Path  # the embedded backend's folder; beside any backend: conversations, keys, uploads
    pg_dsn: str | None = None  # postgresql://...: the PostgreSQL backend
    pg_schema: str = "quelle"  # its schema in that database
    keyword_analyzer: str | None = None  # for a new index; an existing one keeps its own unless this is set
    exact_search_up_to: int = 200_000  # vectors searched exactly (embedded backend; past it an inverted file)

    @property
    def where(self) -> str:
        """The index's location for messages: the folder, or the database without its password."""
        if self.pg_dsn:
            from urllib.parse import urlsplit

            parts = urlsplit(self.pg_dsn)
            host = parts.hostname or "localhost"
            return f"PostgreSQL {host}{parts.path or ''}" if "://" in self.pg_dsn else "PostgreSQL (QUELLE_PG_DSN)"
        return str(self.data_dir)


class StoreReader(Protocol):
    """What reading needs: one committed generation per call, the caller's access applied before ranking."""

    model_id: str
    dim: int
    keyword_analyzer: str

    @property
    def generation(self) -> int:
        """The committed generation reads now see."""
        ...

    def refresh(self) -> int:
        """Look for a newer committed generation now (reads also do it on their own); returns it."""
        ...

    def document(self, doc_id: str) -> DocumentRecord | None: ...

    def document_by_source(self, source: str) -> DocumentRecord | None: ...

    def documents(self, offset: int = 0, limit: int = 100,
                  principals: frozenset[str] | None = None) -> tuple[list[DocumentRecord], int]:
        """A page of documents ordered by source, and the total count; with `principals`, only those readable."""
        ...

    def readable(self, doc_ids: Iterable[str], principals: frozenset[str]) -> set[str]:
        """Those of these documents that exist and whose access list holds one of `principals`."""
        ...

    def chunks_of(self, doc_id: str) -> list[ChunkRecord]:
        """A document's chunks in order."""
        ...

    def sources(self) -> list[str]: ...

    def vectors_for(self, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors already stored for these passage hashes (so identical text is embedded once)."""
        ...

    def search(self, query: np.ndarray, k: int, flt: SearchFilter | None = None) -> list[Hit]: ...

    def retrieve(
        self, query: np.ndarray | None, keywords: str | None, k: int, flt: SearchFilter | None = None
    ) -> Retrieved:
        """Top-k by vector and top-k by BM25 over the keyword terms of `keywords`, from one generation."""
        ...

    def stats(self) -> StoreStats: ...

    def close(self) -> None: ...


class StoreWriter(Protocol):
    """What ingestion and the administrators' routes change: nothing is visible to readers before `commit`,
    and a commit publishes the whole batch as one new generation."""

    model_id: str
    dim: int

    @property
    def generation(self) -> int: ...

    def document_by_source(self, source: str) -> DocumentRecord | None: ...

    def document(self, doc_id: str) -> DocumentRecord | None: ...

    def sources(self) -> list[str]: ...

    def vectors_for(self, text_hashes: Iterable[str]) -> dict[str, np.ndarray]: ...

    def put(self, doc: DocumentRecord, chunks: Sequence[ChunkRecord], vectors: np.ndarray) -> None:
        """Add a document, or replace all of its chunks. Visible to others after `commit`."""
        ...

    def delete(self, doc_id: str) -> bool: ...

    def set_acl(self, doc_id: str, acl: tuple[str, ...]) -> bool:
        """Replace a document's access list, visible at the next commit; False when there is no such document."""
        ...

    def commit(self) -> int:
        """Make every change since the last commit durable and visible at once; returns the generation."""
        ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> StoreWriter: ...

    def __exit__(self, *exc: object) -> None: ...


class Store(StoreReader, StoreWriter, Protocol):
    """A store opened for writing also reads (its own uncommitted state)."""

    def __enter__(self) -> Store: ...


class Backend(Protocol):
    """One storage engine: opening a store, and the quick looks the CLI takes before loading a model."""

    def open(self, config: StoreConfig, *, model_id: str | None, dim: int | None, writable: bool) -> Store:
        """The store (`writable`: the one writer; it creates the index when there is none). `model_id` and
        `dim` None: whatever the index records; else IndexMismatchError when it records another."""
        ...

    def recorded_model(self, config: StoreConfig) -> str | None:
        """The embedding model an existing index was built with (None: no index there yet)."""
        ...

    def recorded_documents(self, config: StoreConfig) -> int | None:
        """How many documents an existing index holds (None: no index there yet)."""
        ...

    def check_model(self, config: StoreConfig, model_id: str, dim: int) -> None:
        """IndexMismatchError when an existing index was built with another model, without loading it."""
        ...

    def check_not_written(self, config: StoreConfig) -> None:
        """IndexLockedError, naming the writer, when another process writes the index now."""
        ...

    def state(self, config: StoreConfig, name: str) -> StateDb:
        """The database for the service's table set `name` ("keys", "conversations"), shared wherever the index
        is (index/state.py)."""
        ...


def backend(config: StoreConfig) -> Backend:
    """The backend the configuration names: one line per backend."""
    if config.pg_dsn:
        from index.postgres import BACKEND as postgres

        return postgres
    from index.embedded import BACKEND as embedded

    return embedded


def open_state(config: StoreConfig, name: str) -> StateDb:
    """The service's table set `name` where the configured backend keeps it."""
    return backend(config).state(config, name)


def open_store(config: StoreConfig, *, model_id: str | None = None, dim: int | None = None,
               writable: bool = False) -> Store:
    return backend(config).open(config, model_id=model_id, dim=dim, writable=writable)
