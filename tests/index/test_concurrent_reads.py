"""Readers of one store in several threads while another process commits: each read's results and the
generation it reports come from the same snapshot, even when a thread that started later has already moved
the shared index to a newer generation."""

from __future__ import annotations

import threading

from index.embedded import FaissSqliteStore
from index.embedded import keyword as search
from tests.index.contract import EMB, put


def test_a_read_begun_before_a_commit_reports_its_own_generation(tmp_path, monkeypatch):
    path = tmp_path / "ix"
    with FaissSqliteStore(path, model_id=EMB.model_id, dim=EMB.dim, writable=True) as writer:
        put(writer, "/d/a.txt", ["alpha audits happen yearly"])
        first = writer.commit()
    reader = FaissSqliteStore(path, model_id=None, dim=None, writable=False)
    inside, go = threading.Event(), threading.Event()
    real = search.keyword

    def paused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = real(*args, **kwargs)
        if threading.current_thread().name == "slow":  # hold this read open across the next commit
            inside.set()
            go.wait(10)
        return out

    monkeypatch.setattr(search, "keyword", paused)
    slow: list = []
    t = threading.Thread(target=lambda: slow.append(reader.retrieve(None, "alpha", 5)), name="slow")
    t.start()
    assert inside.wait(10)
    with FaissSqliteStore(path, model_id=EMB.model_id, dim=EMB.dim, writable=True) as writer:
        put(writer, "/d/b.txt", ["alpha budgets are monthly"])
        second = writer.commit()
    fresh = reader.retrieve(None, "alpha", 5)  # this thread loads the new generation
    go.set()
    t.join(10)
    reader.close()
    assert fresh.generation == second and len(fresh.keyword) == 2
    (old,) = slow
    assert old.generation == first and [h.source for h in old.keyword] == ["/d/a.txt"]
