"""A real-world PDF not made by this project: the Debian New Maintainers' Guide, fetched at test time."""

from __future__ import annotations

import shutil

from index.embedded import FaissSqliteStore
from ingest.chunking import Chunker
from ingest.parsers import parse
from ingest.pipeline import Ingestor
from tests.index.test_faiss_store import check_consistent


def test_real_pdf_parses_page_by_page(debian_pdf):
    doc = parse(debian_pdf)
    assert doc.title == "Debian New Maintainers' Guide" and doc.pages == 63
    assert [s.page for s in doc.sections] == list(range(1, 64))  # every page has text
    assert "Josip Rodin and Osamu Aoki" in doc.sections[0].text
    assert "Chapter 2" in doc.sections[11].text and "First steps" in doc.sections[11].text
    assert not doc.warnings


def test_real_pdf_is_ingested_and_found_by_page(debian_pdf, embedder, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(debian_pdf, docs)
    with FaissSqliteStore(tmp_path / "ix", model_id=embedder.model_id, dim=embedder.dim, writable=True) as store:
        report = Ingestor(store, embedder, Chunker(embedder.tokenizer)).run([docs])
    assert report.added == 1 and report.chunks_written > 63
    store = check_consistent(tmp_path / "ix")
    hits = store.search(embedder.embed_query("Programs needed for development"), 3)
    store.close()
    assert 9 in [h.chunk.page for h in hits]  # section 1.2 starts on page 9 (3 / 57)
