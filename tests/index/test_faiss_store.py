from __future__ import annotations

import contextlib
import os
from pathlib import Path

import faiss
import numpy as np
import pytest

from index.embedded import FaissSqliteStore, manifest
from index.errors import IndexCorruptError, IndexLockedError, IndexWriteError
from tests.index.contract import EMB, StoreContract, put


def check_consistent(data_dir: Path) -> FaissSqliteStore:
    """Open read-only and check the crash-safety invariants of the committed generation."""
    store = FaissSqliteStore(data_dir, model_id=None, dim=None, writable=False)
    db = store._db
    rows = [r[0] for r in db.execute("SELECT rowid FROM chunks")]
    assert store.vector_count() == len(rows)
    assert sorted(store.vector_ids().tolist()) == sorted(rows)
    assert db.execute("SELECT COUNT(*) - COUNT(DISTINCT id) FROM chunks").fetchone()[0] == 0
    partial = db.execute(
        "SELECT d.source FROM documents d LEFT JOIN chunks c ON c.document_id = d.id "
        "GROUP BY d.id HAVING COUNT(c.rowid) != d.n_chunks").fetchall()
    assert partial == [], f"partial documents: {partial}"
    assert db.execute("SELECT COUNT(*) FROM chunks c LEFT JOIN documents d ON d.id = c.document_id "
                      "WHERE d.id IS NULL").fetchone()[0] == 0
    return store


def store_opener(policy=None):
    """The contract's `open_store`: opens stores with `policy` and closes them all afterwards."""
    opened = []

    def _open(path, writable=True, model_id=EMB.model_id, dim=EMB.dim):
        s = FaissSqliteStore(path, model_id=model_id, dim=dim, writable=writable, vector_policy=policy)
        opened.append(s)
        return s

    yield _open
    for s in opened:
        with contextlib.suppress(Exception):
            s.close()


class TestFaissSqliteStore(StoreContract):
    @pytest.fixture
    def open_store(self):
        yield from store_opener()


class TestFaissSqliteStoreInvertedFile(StoreContract):
    """The same contract with the inverted-file index from the first vector on (its probe widened to every
    list, so results are exact and the contract's expectations hold): removal, re-adding, reconstruction,
    filters, mapped reads and generations of the IVF layout."""

    @pytest.fixture
    def open_store(self):
        from index.embedded.vectors import VectorPolicy

        yield from store_opener(VectorPolicy(exact_up_to=0, ivf_min=1, calibrate_to=1.0))


def test_one_writer_at_a_time(tmp_path):
    a = FaissSqliteStore(tmp_path, model_id="m", dim=8, writable=True)
    with pytest.raises(IndexLockedError, match="another process"):
        FaissSqliteStore(tmp_path, model_id="m", dim=8, writable=True)
    reader = FaissSqliteStore(tmp_path, model_id="m", dim=8, writable=False)  # readers are welcome
    reader.close()
    a.close()
    FaissSqliteStore(tmp_path, model_id="m", dim=8, writable=True).close()


def test_commit_keeps_current_and_previous_generation_files_only(tmp_path):
    store = FaissSqliteStore(tmp_path, model_id=EMB.model_id, dim=EMB.dim, writable=True)
    for i in range(4):
        put(store, f"/d/{i}.txt", [f"text {i}"])
        store.commit()
    names = sorted(p.name for p in (tmp_path / "vectors").iterdir())
    assert names == ["g0000000003.faiss", "g0000000004.faiss"]
    store.close()
    check_consistent(tmp_path).close()


def test_a_crash_between_faiss_write_and_sqlite_commit_leaves_the_old_generation(tmp_path):
    store = FaissSqliteStore(tmp_path, model_id=EMB.model_id, dim=EMB.dim, writable=True)
    put(store, "/d/a.txt", ["first"])
    store.commit()
    put(store, "/d/b.txt", ["second"])
    # what a commit has done when killed right after step 1: the next generation's file is on disk
    faiss.write_index(store._index, str(tmp_path / "vectors" / "g0000000002.faiss"))
    store._db.close()  # the process dies: the SQLite transaction never commits
    os.close(store._lock_fd)
    reopened = check_consistent(tmp_path)
    assert reopened.generation == 1 and reopened.sources() == ["/d/a.txt"]
    reopened.close()
    writer = FaissSqliteStore(tmp_path, model_id=EMB.model_id, dim=EMB.dim, writable=True)
    assert not (tmp_path / "vectors" / "g0000000002.faiss").exists()  # the orphan is cleaned up
    writer.close()


def test_a_failing_faiss_write_keeps_the_previous_generation(tmp_path, monkeypatch):
    store = FaissSqliteStore(tmp_path, model_id=EMB.model_id, dim=EMB.dim, writable=True)
    put(store, "/d/a.txt", ["first"])
    store.commit()
    put(store, "/d/b.txt", ["second"])

    def no_space(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("index.embedded.store.publish", no_space)
    with pytest.raises(IndexWriteError, match="No space left on device .errno ENOSPC.; generation 1 is intact"):
        store.commit()
    store.rollback()
    assert store.sources() == ["/d/a.txt"] and store.vector_count() == 1
    store.close()
    check_consistent(tmp_path).close()


def test_mismatched_vector_file_is_reported_as_corrupt(tmp_path):
    store = FaissSqliteStore(tmp_path, model_id=EMB.model_id, dim=EMB.dim, writable=True)
    put(store, "/d/a.txt", ["first", "second"])
    store.commit()
    name = manifest.read_meta(store._db)["faiss_file"]
    store.close()
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(EMB.dim))
    index.add_with_ids(np.zeros((1, EMB.dim), dtype=np.float32), np.array([1], dtype=np.int64))
    faiss.write_index(index, str(tmp_path / "vectors" / name))
    with pytest.raises(IndexCorruptError, match="1 vectors but 2 chunks"):
        FaissSqliteStore(tmp_path, model_id=None, dim=None, writable=False)


def test_reading_a_missing_index_says_how_to_make_one(tmp_path):
    with pytest.raises(IndexCorruptError, match="quelle ingest"):
        FaissSqliteStore(tmp_path / "nothing", model_id=None, dim=None, writable=False)


def test_morphological_keyword_analyzer_for_japanese_and_chinese(tmp_path):
    pytest.importorskip("fugashi")
    pytest.importorskip("jieba")
    from index.keyword import terms

    assert terms("通勤手当の上限はいくらですか？", analyzer="morph") == ["通勤", "手当", "上限", "いくら"]
    assert "远程" in terms("每月可以申请最多八天远程办公。", analyzer="morph")
    store = FaissSqliteStore(tmp_path, model_id=EMB.model_id, dim=EMB.dim, writable=True, keyword_analyzer="morph")
    put(store, "/d/ja.txt", ["通勤手当は月額二万円を上限として支給されます。"])
    put(store, "/d/ja2.txt", ["在宅勤務は週に三日まで認められます。"])
    put(store, "/d/zh.txt", ["上海办公室的员工每月可以申请最多八天远程办公。"])
    store.commit()
    assert store.retrieve(None, "通勤手当の上限はいくらですか？", 3).keyword[0].source == "/d/ja.txt"
    assert store.retrieve(None, "每月可以远程办公几天？", 3).keyword[0].source == "/d/zh.txt"
    store.close()
    reader = FaissSqliteStore(tmp_path, model_id=None, dim=None, writable=False)
    assert reader.keyword_analyzer == "morph"  # recorded in the index, used for queries
    assert reader.retrieve(None, "在宅勤務", 1).keyword[0].source == "/d/ja2.txt"
    reader.close()
    from index.errors import IndexMismatchError

    with pytest.raises(IndexMismatchError, match="keyword analyzer 'morph'"):
        FaissSqliteStore(tmp_path, model_id=EMB.model_id, dim=EMB.dim, writable=True, keyword_analyzer="bigram")


def test_an_index_from_before_access_lists_opens_with_every_document_public(tmp_path):
    import sqlite3

    from index.store import SearchFilter
    from tests.index.contract import EMB, put

    with FaissSqliteStore(tmp_path, model_id=EMB.model_id, dim=EMB.dim, writable=True) as store:
        put(store, "/old.txt", ["an old memo about the canteen"])
        store.commit()
    db = sqlite3.connect(tmp_path / "quelle.sqlite")
    db.execute("ALTER TABLE documents DROP COLUMN acl")  # what schema 1 looked like
    db.commit()
    db.close()
    with FaissSqliteStore(tmp_path, model_id=EMB.model_id, dim=EMB.dim, writable=False) as reader:
        got = reader.retrieve(EMB.embed_query("canteen memo"), "canteen memo", 3,
                              SearchFilter(principals=frozenset({"public"})))
        assert [h.source for h in got.dense] == ["/old.txt"]
        assert reader.documents()[0][0].acl == ("public",)


def test_access_list_entries_are_checked():
    from index.records import check_acl

    assert check_acl(["group:hr", "public", "group:hr"]) == ("group:hr", "public")
    for bad in (["everyone"], ["group:"], ["user:a b"], [], ["role:admin"]):
        with pytest.raises(ValueError, match="access list"):
            check_acl(bad)


def test_keyword_scores_over_a_subset_follow_fts5s_bm25_and_ignore_the_rest(tmp_path):
    """BM25 over the allowed chunks (index/embedded/keyword.py subset_bm25) is FTS5's bm25() when every chunk
    is allowed, score for score; over a subset, a chunk's score and the order do not move when documents outside it
    change (an upload only another group can read changed a caller's own score from 2.3446 to 1.7831)."""
    import random

    from index import keyword as kw
    from index.embedded import keyword as search
    from index.records import DocumentRecord
    from index.store import SearchFilter
    from tests.index.contract import make_doc

    rng = random.Random(7)
    words = "leave annual salary budget review travel holiday policy memo audit laptop merger".split()
    store = FaissSqliteStore(tmp_path / "s", model_id=EMB.model_id, dim=EMB.dim, writable=True)
    for i in range(40):
        put(store, f"/d{i}.txt", [" ".join(rng.choices(words, k=rng.randint(3, 30))) for _ in range(2)])
    store.commit()
    db = store._db
    everything = np.array(sorted(r[0] for r in db.execute("SELECT rowid FROM chunks")), dtype=np.int64)
    for query in ("annual leave", "travel budget review", "merger", "laptop policy memo audit"):
        native = db.execute("SELECT rowid, -bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? "
                            "ORDER BY bm25(chunks_fts), rowid", [kw.match_expression(query)]).fetchall()
        mine = search.subset_bm25(db, kw.query_terms(query), everything, search.mean_terms(db, everything))
        assert len(mine) == len(native) and dict(mine).keys() == dict(native).keys(), query
        theirs = dict(native)
        assert all(abs(s - theirs[r]) <= 1e-9 * abs(s) for r, s in mine), query  # score for score
        assert all(a[1] >= b[1] - 1e-12 for a, b in zip(mine, mine[1:], strict=False)), query  # best first

    def staff_scores() -> list[tuple[str, float]]:
        got = store.retrieve(None, "annual leave", 10, SearchFilter(principals=frozenset({"public"})))
        return [(h.chunk.id, round(h.score, 9)) for h in got.keyword]

    before = staff_scores()
    assert before
    for i in range(5):  # documents only hr may read, full of the query's terms
        doc, chunks = make_doc(f"/hr{i}.txt", ["annual leave annual leave salary"])
        store.put(DocumentRecord(**{**doc.__dict__, "acl": ("group:hr",)}), chunks,
                  EMB.embed_passages([c.embed_text for c in chunks]))
    store.commit()
    assert staff_scores() == before
    store.close()
