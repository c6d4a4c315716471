"""The embedded store's manifest and generations: the `meta` table (model, dimension, analyzer, the current
generation and its FAISS file), the one-writer lock, quick looks at an index without opening it, and the file
moves that make a new generation's vectors survive a crash (write aside, fsync, rename, fsync the folder)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import Any

from index.embedded.schema import SCHEMA_VERSION
from index.errors import IndexLockedError, IndexMismatchError

DATABASE = "quelle.sqlite"
LOCK = "writer.lock"


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fsync_path(path)


def publish(tmp: Path, final: Path) -> None:
    """Atomically put a fully written `tmp` file in place of `final`."""
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def read_meta(db: sqlite3.Connection) -> dict[str, str]:
    return dict(db.execute("SELECT key, value FROM meta").fetchall())


def init_meta(db: sqlite3.Connection, model_id: str | None, dim: int | None, analyzer: str) -> None:
    """A new index's manifest: generation 0, no vectors file yet (nothing when it has one already)."""
    if read_meta(db) or model_id is None or dim is None:
        return
    rows = {"schema_version": SCHEMA_VERSION, "model_id": model_id, "dim": str(dim),
            "keyword_analyzer": analyzer, "generation": "0", "faiss_file": "", "previous_faiss_file": ""}
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO meta VALUES (?, ?)", rows.items())
    db.execute("COMMIT")


def peek(data_dir: Path, sql: str) -> Any:
    """The first value `sql` reads from an existing index (None: no index there, or no such value); opens
    nothing for writing and loads no vectors."""
    path = Path(data_dir) / DATABASE
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute(sql).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return row[0] if row else None


def recorded_documents(data_dir: Path) -> int | None:
    """How many documents an existing index holds (None: no index there yet)."""
    count = peek(data_dir, "SELECT COUNT(*) FROM documents")
    return None if count is None else int(count)


def recorded_model(data_dir: Path) -> str | None:
    """The embedding model an existing index was built with (None: no index there yet)."""
    model: str | None = peek(data_dir, "SELECT value FROM meta WHERE key = 'model_id'")
    return model


def check_model(data_dir: Path, model_id: str, dim: int) -> None:
    """IndexMismatchError when an existing index was built with another model, as opening it would raise,
    without loading its vectors."""
    recorded = recorded_model(data_dir)
    recorded_dim = peek(data_dir, "SELECT value FROM meta WHERE key = 'dim'")
    if recorded is not None and (recorded != model_id or int(recorded_dim) != dim):
        raise mismatch(data_dir, recorded, int(recorded_dim), model_id, dim)


def mismatch(data_dir: Path, recorded: str, recorded_dim: int, model_id: str, dim: int | None
             ) -> IndexMismatchError:
    return IndexMismatchError(
        f"the index at {data_dir} was built with embedding model {recorded!r} (dim {recorded_dim}); this run uses "
        f"{model_id!r} (dim {dim}). Use the same model (QUELLE_EMBEDDING_MODEL={recorded}) or another --data-dir.")


def take_writer_lock(data_dir: Path) -> int:
    """The one writer's lock on the folder (an open file descriptor), or IndexLockedError naming its holder."""
    fd = os.open(data_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise locked(data_dir) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # who holds it, for the next one's message
    return fd


def check_not_written(data_dir: Path) -> None:
    """IndexLockedError, naming the process, when another process holds the index's writer lock now (a
    quick look before a slow start; the lock itself is taken when the store opens)."""
    path = Path(data_dir) / LOCK
    if not path.exists():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise locked(Path(data_dir)) from None
    finally:
        os.close(fd)


def locked(data_dir: Path) -> IndexLockedError:
    return IndexLockedError(f"{data_dir} is being written by another process{_holder(data_dir)}; retry when it is "
                            "done")


def _holder(data_dir: Path) -> str:
    """" (pid N: its command line)" for the process that wrote its id into the writer lock, or ""."""
    try:
        pid = int((data_dir / LOCK).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return ""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    return f" (pid {pid}: {command[:200]})" if command else f" (pid {pid})"
