"""Injected I/O errors (ENOSPC, EIO) at every write, fsync, rename and SQLite step of the commit path.

A dry run records the sequence of I/O operations one commit makes; then, for each operation and each errno, a
fresh index gets the same batch with that one operation failing. Before the SQLite COMMIT the batch must fail
with a clear IndexWriteError and leave the previous generation current and intact; after it, the commit stands.
Either way the index is consistent, no temporary file is left, and running the batch again completes with no
duplicate."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path

import faiss
import pytest

from index.embedded import FaissSqliteStore
from index.embedded import store as faiss_store
from index.errors import IndexWriteError
from ingest.chunking import Chunker
from ingest.pipeline import Ingestor
from tests.index.contract import EMB, make_doc
from tests.index.test_faiss_store import check_consistent

SQLITE_MESSAGES = {errno.ENOSPC: "database or disk is full", errno.EIO: "disk I/O error"}


class Injector:
    """Counts the commit path's I/O operations and fails the `target`-th one with `code`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ops: list[str] = []
        self.target: int | None = None
        self.code = errno.ENOSPC
        self.armed = False
        real_write, real_fsync, real_replace, real_unlink = faiss.write_index, os.fsync, os.replace, os.unlink

        def hit(name: str) -> bool:
            if not self.armed:
                return False
            self.ops.append(name)
            return len(self.ops) - 1 == self.target

        def write_index(index, path):  # noqa: ANN001
            if hit("faiss.write_index"):
                real_write(index, path)  # a partly written file, as a full disk leaves it
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
                raise RuntimeError(f"Error in faiss::FileIOWriter: write error: {os.strerror(self.code)}")
            real_write(index, path)

        def wrap(name, real):  # noqa: ANN001, ANN202
            def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                if hit(name):
                    raise OSError(self.code, os.strerror(self.code))
                return real(*args, **kwargs)
            return call

        monkeypatch.setattr(faiss_store.faiss, "write_index", write_index)
        monkeypatch.setattr(os, "fsync", wrap("os.fsync", real_fsync))
        monkeypatch.setattr(os, "replace", wrap("os.replace", real_replace))
        monkeypatch.setattr(os, "unlink", wrap("os.unlink", real_unlink))
        self._sql_hit = hit

    def wrap_db(self, store: FaissSqliteStore) -> None:
        store._db = _FailingConnection(store._db, self)  # type: ignore[assignment]


class _FailingConnection:
    def __init__(self, inner: sqlite3.Connection, injector: Injector) -> None:
        self._inner, self._inj = inner, injector

    def _check(self, sql: str) -> None:
        if self._inj._sql_hit("sqlite: " + sql.split()[0].upper()):
            raise sqlite3.OperationalError(SQLITE_MESSAGES[self._inj.code])

    def execute(self, sql, *args):  # noqa: ANN001, ANN002, ANN201
        self._check(sql)
        return self._inner.execute(sql, *args)

    def executemany(self, sql, *args):  # noqa: ANN001, ANN002, ANN201
        self._check(sql)
        return self._inner.executemany(sql, *args)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._inner, name)


def base_index(path: Path) -> None:
    with FaissSqliteStore(path, model_id=EMB.model_id, dim=EMB.dim, writable=True) as store:
        for i in range(3):  # two generations, so the next commit has an old vector file to delete
            store.put(*make_doc(f"/docs/a{i}.txt", [f"first batch document {i} about audits"]),
                      EMB.embed_passages([f"first batch document {i} about audits"]))
            if i != 1:
                store.commit()


def put_batch(store: FaissSqliteStore) -> None:
    for i in range(2):
        text = f"second batch document {i} about budgets"
        doc, chunks = make_doc(f"/docs/b{i}.txt", [text])
        store.put(doc, chunks, EMB.embed_passages([c.embed_text for c in chunks]))
    store.delete(make_doc("/docs/a0.txt", ["x"])[0].id)


def named_files(path: Path) -> set[str]:
    db = sqlite3.connect(path / "quelle.sqlite")
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()
    return {meta["faiss_file"], meta["previous_faiss_file"]} - {""}


def sources(path: Path) -> tuple[int, list[str]]:
    store = check_consistent(path)
    try:
        return store.generation, store.sources()
    finally:
        store.close()


def test_every_io_error_on_the_commit_path_keeps_the_previous_generation(tmp_path, monkeypatch):
    pristine = tmp_path / "pristine"
    base_index(pristine)
    gen0, before = sources(pristine)
    inj = Injector(monkeypatch)

    # dry run: the operations one commit makes
    dry = tmp_path / "dry"
    shutil.copytree(pristine, dry)
    with FaissSqliteStore(dry, model_id=EMB.model_id, dim=EMB.dim, writable=True) as store:
        put_batch(store)
        inj.wrap_db(store)
        inj.armed = True
        store.commit()
        inj.armed = False
    ops = list(inj.ops)
    _, after = sources(dry)
    commit_at = ops.index("sqlite: COMMIT")
    assert {"faiss.write_index", "os.fsync", "os.replace", "sqlite: UPDATE", "os.unlink"} <= set(ops), ops

    checked = 0
    for code in (errno.ENOSPC, errno.EIO):
        for target, op in enumerate(ops):
            case = tmp_path / f"{errno.errorcode[code]}-{target}"
            shutil.copytree(pristine, case)
            inj.ops, inj.target, inj.code = [], target, code
            with FaissSqliteStore(case, model_id=EMB.model_id, dim=EMB.dim, writable=True) as store:
                put_batch(store)
                inj.wrap_db(store)
                inj.armed = True
                if target <= commit_at:
                    with pytest.raises(IndexWriteError) as err:
                        store.commit()
                    inj.armed = False
                    message = str(err.value)
                    assert f"generation {gen0} is intact" in message and str(case) in message, message
                    assert errno.errorcode[code] in message or SQLITE_MESSAGES[code] in message, (op, message)
                    assert sources(case) == (gen0, before), op  # the previous generation, as it was
                    assert {f.name for f in (case / "vectors").iterdir()} == named_files(case), op  # nothing left
                    # the same writer can run the batch again after the failure
                    put_batch(store)
                    assert store.commit() == gen0 + 1
                else:
                    assert store.commit() == gen0 + 1  # the commit stands; only cleaning up failed
                    inj.armed = False
            assert sources(case) == (gen0 + 1, after), (errno.errorcode[code], op)
            assert not list((case / "vectors").glob("*.tmp")), op
            checked += 1
    assert checked == 2 * len(ops) >= 16


def test_a_full_disk_during_ingestion_is_a_clear_error_and_a_rerun_completes(tmp_path, monkeypatch, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        (docs / f"n{i}.md").write_text(f"# Note {i}\n\nThe printer on floor {i} needs toner every month.")
    data_dir = tmp_path / "index"
    inj = Injector(monkeypatch)
    inj.target, inj.code = 0, errno.ENOSPC  # the first I/O of the commit: writing the vectors

    def run():  # noqa: ANN202
        with FaissSqliteStore(data_dir, model_id=embedder.model_id, dim=embedder.dim, writable=True) as store:
            return Ingestor(store, embedder, Chunker(embedder.tokenizer), commit_interval=float("inf")).run([docs])

    inj.armed = True
    with pytest.raises(IndexWriteError, match="No space left on device"):
        run()
    inj.armed = False
    assert sources(data_dir) == (0, [])
    report = run()
    assert (report.added, report.failed) == (4, 0)
    gen, got = sources(data_dir)
    assert gen == 1 and len(got) == 4
