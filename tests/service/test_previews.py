"""Page previews: PDF pages drawn by PDFium with the quoted span marked where it really stands, the text section
around a chunk for other documents, access-checked like every document route."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from index.records import ChunkRecord
from service.previews import HIGHLIGHT, locate, section
from tests.service.test_permissions import make_world

LEAVE = ("Every full-time employee receives 25 days of paid annual leave per calendar year. Part-time employees "
         "receive leave in proportion to their contracted hours.")


def test_locate_ignores_spacing_case_hyphenation_and_ligatures():
    page = "Leave and time off\nEvery full-\ntime employee re-\nceives 25 days of paid an\ufb01nal leave."
    start, end = locate(page, "every full-time employee receives 25 days of paid annfinal leave")
    assert page[start:end].startswith("Every full-") and page[start:end].endswith("leave")
    assert locate(page, "a sentence that is nowhere on this page at all") is None
    assert locate(page, "") is None
    # mostly there (a word changed): the span where the whole quote would sit
    got = locate(page, "Every full-time employee receives 25 days of paid annfinal vacation")
    assert got is not None and page[got[0]:].startswith("Every")


def _handbook(client) -> dict:
    docs = client.get("/v1/documents", params={"limit": 100}).json()["documents"]
    return next(d for d in docs if d["source"].endswith("employee-handbook.pdf"))


def _marked(png: bytes) -> list[tuple[int, int]]:
    """The pixels painted in the highlight colour (yellow over white)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    r0, g0, b0 = HIGHLIGHT[:3]
    return [(x, y) for y in range(0, image.height, 2) for x in range(0, image.width, 2)
            if (p := image.getpixel((x, y))) and p[0] > 230 and 215 < p[1] < 245 and p[2] < 170]


def test_a_pdf_page_is_drawn_with_the_quote_marked_where_it_stands(client):
    doc = _handbook(client)
    plain = client.get(f"/v1/documents/{doc['id']}/pages/2", params={"width": 600})
    assert plain.status_code == 200 and plain.headers["content-type"] == "image/png"
    assert plain.headers["x-quelle-highlights"] == "0"
    image = Image.open(io.BytesIO(plain.content))
    assert image.width == 600 and image.height > 800  # A4 portrait
    assert not _marked(plain.content)

    marked = client.get(f"/v1/documents/{doc['id']}/pages/2", params={"width": 600, "highlight": LEAVE})
    assert marked.headers["x-quelle-highlights"] == "1"
    spots = _marked(marked.content)
    assert len(spots) > 500
    # the mark sits on the first paragraph under the heading, in the top fifth of the page
    ys = [y for _, y in spots]
    assert 0.08 * image.height < min(ys) and max(ys) < 0.2 * image.height

    # another page does not hold the quote: drawn, nothing marked
    other = client.get(f"/v1/documents/{doc['id']}/pages/3", params={"width": 600, "highlight": LEAVE})
    assert other.status_code == 200 and other.headers["x-quelle-highlights"] == "0"


def test_page_errors_name_the_document_and_the_problem(client, make_client, data_dir):
    doc = _handbook(client)
    r = client.get(f"/v1/documents/{doc['id']}/pages/9")
    assert r.status_code == 404 and "has pages 1 to 6, not 9" in r.json()["detail"]
    assert client.get(f"/v1/documents/{doc['id']}/pages/0").status_code == 422
    r = client.get(f"/v1/documents/{doc['id']}/pages/1", params={"width": 5000})
    assert r.status_code == 422 and "width" in r.json()["error"]
    r = client.get(f"/v1/documents/{doc['id']}/pages/1", params={"highlight": ["x"] * 9})
    assert r.status_code == 422 and "highlight" in r.json()["error"] and "at most 8" in r.json()["error"]
    docs = client.get("/v1/documents", params={"limit": 100}).json()["documents"]
    docx = next(d for d in docs if d["kind"] == "docx")
    r = client.get(f"/v1/documents/{docx['id']}/pages/1")
    assert r.status_code == 404 and f"/v1/documents/{docx['id']}/section" in r.json()["detail"]
    assert client.get("/v1/documents/nope/pages/1").status_code == 404


def test_a_changed_or_missing_file_is_never_drawn_as_if_it_were_the_indexed_one(client, data_dir, tmp_path):
    docs = client.get("/v1/documents", params={"limit": 100}).json()["documents"]
    pdf = next(d for d in docs if d["source"].endswith("multipage.pdf"))
    path = Path(pdf["source"])  # the shared corpus: put back as it was, times included
    original, st = path.read_bytes(), path.stat()
    try:
        with open(path, "ab") as f:
            f.write(b"\n% appended after ingestion\n")
        r = client.get(f"/v1/documents/{pdf['id']}/pages/1")
        assert r.status_code == 409 and "changed since it was ingested" in r.json()["detail"]
        path.unlink()
        r = client.get(f"/v1/documents/{pdf['id']}/pages/1")
        assert r.status_code == 404 and "no longer at" in r.json()["detail"]
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_previews_and_sections_hold_the_access_rules(make_client, data_dir):
    client, auth, doc, _ = make_world(make_client, data_dir)  # the handbook PDF: hr only
    hit = client.post("/v1/search", json={"query": "annual leave days", "top_k": 1}, headers=auth["alice"]).json()[
        "results"][0]
    assert hit["document_id"] == doc["id"]
    for url, params in ((f"/v1/documents/{doc['id']}/pages/2", {}),
                        (f"/v1/documents/{doc['id']}/section", {"chunk": hit["chunk_id"]})):
        assert client.get(url, params=params).status_code == 401
        r = client.get(url, params=params, headers=auth["bob"])
        assert r.status_code == 404 and r.json()["detail"] == f"no document with id {doc['id']!r}"
        assert client.get(url, params=params, headers=auth["alice"]).status_code == 200
        assert client.get(url, params=params, headers=auth["root"]).status_code == 200


def test_a_section_shows_the_chunk_in_its_place(client):
    hit = client.post("/v1/search", json={"query": "per diem for meals", "top_k": 1}).json()["results"][0]
    got = client.get(f"/v1/documents/{hit['document_id']}/section", params={"chunk": hit["chunk_id"]}).json()
    assert got["heading_path"] == hit["heading_path"] and got["kind"] == "docx"
    assert got["text"][got["start"]:got["end"]] == hit["text"]
    r = client.get(f"/v1/documents/{hit['document_id']}/section", params={"chunk": "nochunk"})
    assert r.status_code == 404 and "no chunk 'nochunk'" in r.json()["detail"]


def test_overlapping_chunks_are_joined_without_repeating_words():
    text = "One two three. Four five six. Seven eight nine. Ten eleven."
    a, b, c = (0, 29), (15, 47), (48, 59)  # b repeats "Four five six." from a

    def chunk(i: int, span: tuple[int, int], heading: tuple[str, ...] = ("H",)) -> ChunkRecord:
        return ChunkRecord(id=f"c{i}", document_id="d", ordinal=i, text=text[span[0]:span[1]],
                           char_start=span[0], char_end=span[1], n_tokens=5, heading_path=heading)

    chunks = [chunk(0, a), chunk(1, b), chunk(2, c), chunk(3, (48, 59), ("Other",))]
    got = section(chunks, "c1")
    assert got is not None
    assert got.text == "One two three. Four five six. Seven eight nine.\nTen eleven."
    assert got.text[got.start:got.end] == text[15:47]
    assert section(chunks, "c3").text == "Ten eleven."
    assert section(chunks, "missing") is None


def test_drawn_pages_are_cached_by_content_and_slow_ones_refused(built_index):
    from index.embedded import FaissSqliteStore
    from service.previews import PreviewError, Previews

    with FaissSqliteStore(built_index, model_id=None, dim=None, writable=False) as store:
        docs, _ = store.documents(0, 100)
    handbook = next(d for d in docs if d.source.endswith("employee-handbook.pdf"))
    previews = Previews(cache_bytes=1 << 20)
    try:
        first = previews.page(handbook, 2, width=300, highlights=[LEAVE])
        assert previews.page(handbook, 2, width=300, highlights=[LEAVE]) is first  # from the cache
        assert previews.page(handbook, 2, width=301, highlights=[LEAVE]) is not first
        # a very tall or wide page is bounded on both sides, whatever the width asked
        assert max(first.width, first.height) <= 4000
    finally:
        previews.close()
    slow = Previews(timeout=0.000001)
    try:
        with pytest.raises(PreviewError) as refused:
            slow.page(handbook, 3, width=2000, highlights=[LEAVE])
        assert refused.value.status == 503 and "took longer than" in str(refused.value)
    finally:
        slow.close()
