"""The service's own small tables (API keys, conversations), kept by the index's backend so that replicas share
them where they share the index: SQLite files in the data dir beside the embedded index (replicas on one host),
tables beside a PostgreSQL index (replicas on any host).

The stores using it write portable SQL: `?` placeholders, TEXT / INTEGER / DOUBLE PRECISION columns, no LIMIT
without an ORDER BY; `transaction(lock)` serialises writers that take the same lock name (SQLite: the database's
write lock; PostgreSQL: an advisory lock held to the end of the transaction).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol


class StateDb(Protocol):
    dialect: str  # "sqlite" or "postgres": for the rare statement that differs (a legacy file's migration)

    def script(self, sql: str) -> None:
        """Run several statements without parameters (schema)."""
        ...

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (none for a statement that returns none)."""
        ...

    def run_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None: ...

    def add_column(self, table: str, column: str, definition: str) -> None:
        """A migration step: the column, unless the table has it already."""
        ...

    def transaction(self, lock: str) -> Any:
        """A context in which the statements of this thread form one transaction, serialised with every other
        writer taking `lock` (in any process, on any host sharing the database)."""
        ...

    def close(self) -> None: ...


class SqliteState:
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._lock = threading.RLock()  # one connection: one statement (or transaction) at a time

    def script(self, sql: str) -> None:
        with self._lock:
            self._db.executescript(sql)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def run_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            self._db.executemany(sql, [tuple(p) for p in params])

    def add_column(self, table: str, column: str, definition: str) -> None:
        with self._lock:
            if column in {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                return
            try:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            except sqlite3.OperationalError as exc:  # another process added it meanwhile
                if "duplicate column" not in str(exc):
                    raise

    @contextmanager
    def transaction(self, lock: str) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # the database's write lock: every writer is serialised
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
