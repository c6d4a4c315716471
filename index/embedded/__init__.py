"""The embedded backend, the default: one data directory with FAISS for the vectors and SQLite for documents,
chunks, keyword terms (FTS5) and the manifest; nothing to install or run.

    store.py     FaissSqliteStore: consistent reads, one writer, commits as generations
    manifest.py  the manifest and generations: meta table, writer lock, crash-safe file publishing
    schema.py    the SQLite tables, migrations, row conversion, the rows a filter allows
    vectors.py   the FAISS index (exact, or an inverted file past a size) and dense search
    keyword.py   BM25 over FTS5, with statistics of the caller's readable chunks
"""

from __future__ import annotations

from index.embedded import manifest
from index.embedded.store import FaissSqliteStore
from index.embedded.vectors import VectorPolicy
from index.state import SqliteState, StateDb
from index.store import Store, StoreConfig


class EmbeddedBackend:
    def open(self, config: StoreConfig, *, model_id: str | None, dim: int | None, writable: bool) -> Store:
        return FaissSqliteStore(config.data_dir, model_id=model_id, dim=dim, writable=writable,
                                keyword_analyzer=config.keyword_analyzer if writable else None,
                                vector_policy=VectorPolicy(exact_up_to=config.exact_search_up_to))

    def recorded_model(self, config: StoreConfig) -> str | None:
        return manifest.recorded_model(config.data_dir)

    def recorded_documents(self, config: StoreConfig) -> int | None:
        return manifest.recorded_documents(config.data_dir)

    def check_model(self, config: StoreConfig, model_id: str, dim: int) -> None:
        manifest.check_model(config.data_dir, model_id, dim)

    def check_not_written(self, config: StoreConfig) -> None:
        manifest.check_not_written(config.data_dir)

    def state(self, config: StoreConfig, name: str) -> StateDb:
        return SqliteState(config.data_dir / f"{name}.sqlite")


BACKEND = EmbeddedBackend()

__all__ = ["BACKEND", "FaissSqliteStore", "VectorPolicy"]
