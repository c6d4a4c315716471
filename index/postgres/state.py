"""The service's own tables (API keys, conversations) in the index's PostgreSQL schema, so that replicas on any
host share them (index/state.py). One connection per process, re-opened when the server dropped it."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from index.postgres.store import connect
from index.store import StoreConfig


class PostgresState:
    dialect = "postgres"

    def __init__(self, config: StoreConfig, name: str) -> None:
        self.config = config
        self.name = name
        self._lock = threading.RLock()  # one connection: one statement (or transaction) at a time
        self._conn: Any = None
        self._conn = self._connection()

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            conn = connect(self.config, role=f"service {self.name}")
            schema = self.config.pg_schema
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            conn.execute(f"SET search_path TO {schema}")
            self._conn = conn
        return self._conn

    def script(self, sql: str) -> None:
        with self._lock:
            self._connection().execute(sql)  # several statements: allowed without parameters

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self._connection().execute(sql.replace("?", "%s"), tuple(params))
            return cur.fetchall() if cur.description else []

    def run_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        with self._lock, self._connection().cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), [tuple(p) for p in params])

    def add_column(self, table: str, column: str, definition: str) -> None:
        with self._lock:
            self._connection().execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {definition}")

    @contextmanager
    def transaction(self, lock: str) -> Iterator[None]:
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                             (f"quelle {self.config.pg_schema} {lock}",))
                yield

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
