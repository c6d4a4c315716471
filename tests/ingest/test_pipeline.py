from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from index.embedded import FaissSqliteStore
from ingest.chunking import Chunker
from ingest.pipeline import Ingestor
from tests.conftest import SAMPLES
from tests.index.test_faiss_store import check_consistent


@pytest.fixture
def ingest(embedder, tmp_path):
    """ingest(paths, sync=False) -> report, on a fresh index in tmp_path/index (reused across calls)."""
    data_dir = tmp_path / "index"

    def run(paths, sync=False, embed_batch=256):
        with FaissSqliteStore(data_dir, model_id=embedder.model_id, dim=embedder.dim, writable=True) as store:
            return Ingestor(store, embedder, Chunker(embedder.tokenizer), embed_batch=embed_batch).run(
                [Path(p) for p in paths], sync=sync)

    run.data_dir = data_dir
    return run


def snapshot(data_dir: Path):
    store = check_consistent(data_dir)
    rows = store._db.execute("SELECT c.id, c.text, d.source FROM chunks c JOIN documents d ON d.id = c.document_id "
                             "ORDER BY c.id").fetchall()
    gen = store.generation
    store.close()
    return rows, gen


def test_a_bad_file_is_reported_and_skipped_and_the_rest_is_ingested(ingest, data_copy, embedder):
    report = ingest([data_copy])
    failed = {Path(f.path).name: f.reason for f in report.failures}
    assert set(failed) == {"encrypted.pdf", "truncated.pdf", "corrupt.pdf", "image-only.pdf", "empty.txt"}
    assert "password" in failed["encrypted.pdf"]
    assert report.added == 7 and report.failed == 5
    assert any("scanned-page.pdf page 2" in w for w in report.warnings)
    store = check_consistent(ingest.data_dir)
    assert store.stats().documents == 7
    hits = store.search(embedder.embed_query("basalt budget quarterly review"), 1)
    store.close()
    assert Path(hits[0].source).name == "multipage.pdf" and hits[0].chunk.page == 2


def test_rerunning_on_unchanged_files_embeds_nothing_and_changes_nothing(ingest, tmp_path):
    docs = tmp_path / "samples"
    shutil.copytree(SAMPLES, docs)
    first = ingest([docs])
    assert first.added == 6 and first.chunks_embedded > 0
    before = snapshot(ingest.data_dir)
    again = ingest([docs])
    assert (again.added, again.updated, again.unchanged, again.chunks_embedded, again.chunks_written) == (0, 0, 6, 0, 0)
    assert snapshot(ingest.data_dir) == before  # same rows, same generation
    # touching a file without changing it: hashed, still unchanged
    md = docs / "onboarding.md"
    os.utime(md, ns=(md.stat().st_atime_ns, md.stat().st_mtime_ns + 10**9))
    touched = ingest([docs])
    assert touched.unchanged == 6 and touched.chunks_embedded == 0
    assert snapshot(ingest.data_dir)[0] == before[0]


def test_a_changed_file_replaces_exactly_its_own_chunks(ingest, tmp_path):
    docs = tmp_path / "samples"
    shutil.copytree(SAMPLES, docs)
    ingest([docs])
    before, _ = snapshot(ingest.data_dir)
    md = docs / "onboarding.md"
    md.write_text(md.read_text() + "\n## Parking\n\nBicycle parking is in the basement, level minus one.\n")
    report = ingest([docs])
    assert (report.updated, report.unchanged, report.added) == (1, 5, 0)
    assert report.chunks_embedded <= 2  # only the new section (and the chunk it touches) is embedded
    after, _ = snapshot(ingest.data_dir)
    src = md.resolve().as_posix()
    assert [r for r in before if r[2] != src] == [r for r in after if r[2] != src]
    assert any("Bicycle parking" in r[1] for r in after if r[2] == src)


def test_sync_removes_documents_whose_files_are_gone(ingest, tmp_path):
    docs = tmp_path / "samples"
    shutil.copytree(SAMPLES, docs)
    ingest([docs])
    shutil.rmtree(docs / "zh")
    no_sync = ingest([docs])
    assert no_sync.removed == 0
    synced = ingest([docs], sync=True)
    assert synced.removed == 1
    store = check_consistent(ingest.data_dir)
    assert not any("/zh/" in s for s in store.sources()) and store.stats().documents == 5
    store.close()


def test_sync_only_touches_the_given_roots(ingest, tmp_path):
    a, b = tmp_path / "a", tmp_path / "ab"
    a.mkdir()
    b.mkdir()
    (a / "x.md").write_text("# X\n\nexes are here.")
    (b / "y.md").write_text("# Y\n\nwhys are here.")
    ingest([a, b])
    (b / "y.md").unlink()
    assert ingest([a], sync=True).removed == 0  # "a" is not a prefix match for "ab"
    assert ingest([b], sync=True).removed == 1


def test_identical_content_at_two_paths_is_embedded_once(ingest, tmp_path, embedder):
    docs = tmp_path / "d"
    docs.mkdir()
    shutil.copy(SAMPLES / "onboarding.md", docs / "one.md")
    shutil.copy(SAMPLES / "onboarding.md", docs / "two.md")
    report = ingest([docs])
    assert report.added == 2
    assert report.chunks_embedded == report.chunks_written // 2 == report.chunks_reused
    store = check_consistent(ingest.data_dir)
    hit = store.search(embedder.embed_query("where do I collect my laptop"), 1)[0]
    assert {Path(hit.source).name, *(Path(s).name for s in hit.also_in)} == {"one.md", "two.md"}
    store.close()


def test_a_file_that_breaks_after_a_change_keeps_its_previous_version(ingest, tmp_path):
    docs = tmp_path / "d"
    docs.mkdir()
    good = docs / "manual.pdf"
    shutil.copy(Path(__file__).parent.parent / "data" / "multipage.pdf", good)
    ingest([docs])
    before, _ = snapshot(ingest.data_dir)
    good.write_bytes(good.read_bytes()[:500])
    report = ingest([docs])
    assert report.failed == 1 and "manual.pdf" in report.failures[0].path
    assert snapshot(ingest.data_dir)[0] == before


def test_small_embed_batches_give_the_same_index(ingest, tmp_path, embedder):
    docs = tmp_path / "samples"
    shutil.copytree(SAMPLES, docs)
    ingest([docs], embed_batch=3)
    small, _ = snapshot(ingest.data_dir)
    other = tmp_path / "other"
    with FaissSqliteStore(other, model_id=embedder.model_id, dim=embedder.dim, writable=True) as store:
        Ingestor(store, embedder, Chunker(embedder.tokenizer)).run([docs])
    assert snapshot(other)[0] == small


def test_files_of_other_types_are_listed_as_skipped_and_tables_are_read(ingest, tmp_path, embedder):
    docs = tmp_path / "share"
    docs.mkdir()
    (docs / "logo.gif").write_bytes(b"GIF89a")
    (docs / "backup.gz").write_bytes(b"\x1f\x8b")
    (docs / ".hidden.bin").write_bytes(b"x")
    (docs / "phones.csv").write_text("Name,Phone,Office\nAda Lovelace,4711,B2\nBo Bell,4712,C3\n")
    (docs / "rooms.json").write_text('[{"room": "Basalt", "seats": 12}, {"room": "Granite", "seats": 30}]')
    report = ingest([docs])
    assert report.added == 2 and report.failed == 0
    assert sorted(Path(p).name for p in report.skipped) == ["backup.gz", "logo.gif"]  # hidden files are nobody's
    assert {".pdf", ".docx", ".csv", ".json", ".xlsx"} <= set(report.supported)
    summary = report.summary()
    assert "skipped: 2 file(s) of types not read: .gif 1, .gz 1" in summary or \
        "skipped: 2 file(s) of types not read: .gz 1, .gif 1" in summary
    assert "(supported: " in summary and str(docs / "logo.gif") in summary
    store = check_consistent(ingest.data_dir)
    hits = store.retrieve(embedder.embed_query("Ada Lovelace phone"), "Ada Lovelace phone", 1)
    store.close()
    assert "Phone: 4711" in hits.keyword[0].chunk.text


def test_progress_counts_files_finished_not_files_handed_to_the_parsers(embedder, tmp_path):
    """Parsing runs ahead in worker processes: the bar counted files handed to them and sat at 100% while most
    were still to be embedded. Each progress report now counts the files finished, as the report does."""
    from ingest.sandbox import ParseLimits, ParserPool

    docs = tmp_path / "docs"
    shutil.copytree(SAMPLES, docs)
    calls: list[tuple[int, int, int]] = []

    def progress(report, done: int, total: int) -> None:
        calls.append((done, report.added + report.updated + report.unchanged + report.failed, total))
        assert done < total or not ingestor._pending  # 100% only once every chunk is embedded

    with FaissSqliteStore(tmp_path / "ix", model_id=embedder.model_id, dim=embedder.dim, writable=True) as store, \
            ParserPool(2, ParseLimits(timeout_s=60, memory_mb=1024)) as pool:
        ingestor = Ingestor(store, embedder, Chunker(embedder.tokenizer), parser=pool)
        report = ingestor.run([docs], progress=progress)
    assert report.added == calls[-1][2] and calls[-1][0] == calls[-1][2]
    assert all(done == finished for done, finished, _ in calls), calls
    assert [done for done, _, _ in calls] == sorted(done for done, _, _ in calls)
