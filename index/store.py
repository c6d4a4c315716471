"""The storage boundary: what ingestion writes and what the service reads.

`FaissSqliteStore` (index/faiss_store.py) is the embedded backend. A second backend (PostgreSQL with pgvector)
must pass the same contract tests (tests/index/contract.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from index.records import ChunkRecord, DocumentRecord, Hit


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
    vector_index: str = "exact"  # or "ivf<lists>,nprobe=<n>" past the exact-search threshold (index/vectors.py)


class Store(Protocol):
    model_id: str
    dim: int

    @property
    def generation(self) -> int:
        """The committed generation reads now see."""
        ...

    def document_by_source(self, source: str) -> DocumentRecord | None: ...

    def document(self, doc_id: str) -> DocumentRecord | None: ...

    def documents(self, offset: int = 0, limit: int = 100,
                  principals: frozenset[str] | None = None) -> tuple[list[DocumentRecord], int]:
        """A page of documents ordered by source, and the total count; with `principals`, only those readable."""
        ...

    def chunks_of(self, doc_id: str) -> list[ChunkRecord]:
        """A document's chunks in order."""
        ...

    def sources(self) -> list[str]: ...

    def vectors_for(self, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors already stored for these passage hashes (so identical text is embedded once)."""
        ...

    def put(self, doc: DocumentRecord, chunks: Sequence[ChunkRecord], vectors: np.ndarray) -> None:
        """Add a document, or replace all of its chunks. Visible to others after `commit`."""
        ...

    def delete(self, doc_id: str) -> bool: ...

    def readable(self, doc_ids: Iterable[str], principals: frozenset[str]) -> set[str]:
        """Those of these documents that exist and whose access list holds one of `principals`."""
        ...

    def set_acl(self, doc_id: str, acl: tuple[str, ...]) -> bool:
        """Replace a document's access list, visible at the next commit; False when there is no such document."""
        ...

    def commit(self) -> int:
        """Make every change since the last commit durable and visible at once; returns the generation."""
        ...

    def rollback(self) -> None: ...

    def search(self, query: np.ndarray, k: int, flt: SearchFilter | None = None) -> list[Hit]: ...

    def retrieve(
        self, query: np.ndarray | None, keywords: str | None, k: int, flt: SearchFilter | None = None
    ) -> Retrieved:
        """Top-k by vector and top-k by BM25 over the keyword terms of `keywords`, from one generation."""
        ...

    def stats(self) -> StoreStats: ...

    def close(self) -> None: ...
