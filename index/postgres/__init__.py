"""The PostgreSQL backend (`pip install -e ".[postgres]"`, `QUELLE_PG_DSN=postgresql://...`): any PostgreSQL 15
or newer with pgvector, a managed one included. The index is one schema (`QUELLE_PG_SCHEMA`, default quelle).

    store.py   PostgresStore: snapshot reads, one writer (advisory lock), commits as generations
    schema.py  the tables and the numbered steps that build and migrate them
    search.py  dense search by HNSW with the access filter inside the scan; BM25 over a postings table
    state.py   the service's API keys and conversations, in the same schema (replicas on any host share them)
"""

from __future__ import annotations

from index.postgres.store import PostgresStore, connect, lock_key, locked, mismatch, read_meta
from index.state import StateDb
from index.store import Store, StoreConfig


class PostgresBackend:
    def open(self, config: StoreConfig, *, model_id: str | None, dim: int | None, writable: bool) -> Store:
        return PostgresStore(config, model_id=model_id, dim=dim, writable=writable)

    def _meta(self, config: StoreConfig) -> tuple[dict[str, str], int | None]:
        with connect(config, role="check") as conn:
            meta = read_meta(conn, config.pg_schema)
            docs = None
            if meta:
                docs = conn.execute(f"SELECT count(*) FROM {config.pg_schema}.documents").fetchone()[0]
        return meta, docs

    def recorded_model(self, config: StoreConfig) -> str | None:
        return self._meta(config)[0].get("model_id")

    def recorded_documents(self, config: StoreConfig) -> int | None:
        return self._meta(config)[1]

    def check_model(self, config: StoreConfig, model_id: str, dim: int) -> None:
        meta, _ = self._meta(config)
        if meta and (meta["model_id"] != model_id or int(meta["dim"]) != dim):
            raise mismatch(config, meta["model_id"], int(meta["dim"]), model_id, dim)

    def check_not_written(self, config: StoreConfig) -> None:
        with connect(config, role="check") as conn:
            key = lock_key(config.pg_schema)
            if not conn.execute("SELECT pg_try_advisory_lock_shared(%s)", [key]).fetchone()[0]:
                raise locked(config, conn)
            conn.execute("SELECT pg_advisory_unlock_shared(%s)", [key])

    def state(self, config: StoreConfig, name: str) -> StateDb:
        from index.postgres.state import PostgresState

        return PostgresState(config, name)


BACKEND = PostgresBackend()

__all__ = ["BACKEND", "PostgresStore"]
