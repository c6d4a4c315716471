from __future__ import annotations

from pathlib import Path

from index.embedded import FaissSqliteStore
from tests.conftest import DATA


def test_documents_are_listed_in_pages(client):
    first = client.get("/v1/documents", params={"limit": 3}).json()
    assert first["total"] == 13 and len(first["documents"]) == 3 and first["offset"] == 0
    rest = client.get("/v1/documents", params={"offset": 3, "limit": 100}).json()
    sources = [d["source"] for d in first["documents"] + rest["documents"]]
    assert len(sources) == 13 and sources == sorted(sources)
    assert client.get("/v1/documents", params={"limit": 0}).status_code == 422
    assert client.get("/v1/documents", params={"offset": -1}).status_code == 422


def test_one_document_and_an_unknown_one(client):
    docs = client.get("/v1/documents", params={"limit": 100}).json()["documents"]
    pdf = next(d for d in docs if d["source"].endswith("scanned-page.pdf"))
    one = client.get(f"/v1/documents/{pdf['id']}").json()
    assert one["pages"] == 2 and one["chunks"] == 1 and one["kind"] == "pdf"
    assert one["warnings"] == ["scanned-page.pdf page 2: no extractable text (scanned or image-only page?)"]
    r = client.get("/v1/documents/doesnotexist")
    assert r.status_code == 404 and "doesnotexist" in r.json()["detail"]


def test_delete_removes_the_document_from_answers_at_once(client):
    q = {"query": "per diem outside Europe", "top_k": 3}
    top = client.post("/v1/search", json=q).json()["results"][0]
    assert top["source"].endswith("travel-and-expenses.docx")
    assert client.delete(f"/v1/documents/{top['document_id']}").status_code == 204
    after = client.post("/v1/search", json=q).json()["results"]
    assert all(r["document_id"] != top["document_id"] for r in after)
    assert client.get(f"/v1/documents/{top['document_id']}").status_code == 404
    assert client.delete(f"/v1/documents/{top['document_id']}").status_code == 404


def test_delete_while_another_process_writes_is_a_409(client, data_dir):
    doc = client.get("/v1/documents").json()["documents"][0]
    with FaissSqliteStore(data_dir, model_id=None, dim=None, writable=True):
        r = client.delete(f"/v1/documents/{doc['id']}")
    assert r.status_code == 409 and "another process" in r.json()["detail"]


def test_upload_ingests_through_the_pipeline_and_is_searchable(client):
    md = b"# Bike Policy\n\n## Parking\n\nBicycles are parked in the basement garage, level minus two.\n"
    r = client.post("/v1/documents", files={"file": ("bike policy.md", md, "text/markdown")})
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["status"] == "added" and report["chunks_written"] == 1
    assert report["document"]["title"] == "Bike Policy" and report["document"]["source"].endswith("bike_policy.md")
    hits = client.post("/v1/search", json={"query": "where do I park my bicycle", "top_k": 1}).json()["results"]
    assert "basement garage" in hits[0]["text"]
    again = client.post("/v1/documents", files={"file": ("bike policy.md", md, "text/markdown")}).json()
    assert again["status"] == "unchanged" and again["chunks_written"] == 0


def test_upload_of_a_bad_file_is_a_422_with_the_reason(client):
    enc = (DATA / "encrypted.pdf").read_bytes()
    r = client.post("/v1/documents", files={"file": ("secret.pdf", enc, "application/pdf")})
    assert r.status_code == 422 and "password" in r.json()["detail"]
    r = client.post("/v1/documents", files={"file": ("tool.exe", b"MZ\x90\x00", "application/octet-stream")})
    assert r.status_code == 422 and "unsupported file type" in r.json()["detail"]
    assert client.post("/v1/documents").status_code == 422  # no file at all
    extra = client.post("/v1/documents", data={"acls": "group:hr"}, files={"file": ("a.md", b"# A\n\nx", "text/md")})
    assert extra.status_code == 422 and extra.json()["detail"][0]["field"] == "acls"


def test_upload_names_cannot_escape_the_upload_folder(client, data_dir):
    r = client.post("/v1/documents", files={"file": ("../../../evil.md", b"# Evil\n\nText here.", "text/markdown")})
    assert r.status_code == 201
    source = Path(r.json()["document"]["source"])
    assert (data_dir / "uploads").resolve() in source.parents and source.name == "evil.md"


def test_upload_size_is_limited(make_client):
    client = make_client(max_upload_bytes=4096)
    r = client.post("/v1/documents", files={"file": ("big.md", b"# Big\n\n" + b"word " * 5000, "text/markdown")})
    assert r.status_code == 413


def _files(data_dir: Path) -> list[str]:
    return sorted(p.relative_to(data_dir / "uploads").as_posix() for p in (data_dir / "uploads").rglob("*")
                  if p.is_file())


def test_a_long_cjk_file_name_is_cut_by_bytes_and_nothing_is_left_behind(client, data_dir):
    name = "社内規程" * 22 + "の改定案.md"  # 93 characters, 279 bytes in UTF-8: over the 255 a file system allows
    text = "# 改定案\n\n出張の日当は五千円です。".encode()
    r = client.post("/v1/documents", files={"file": (name, text, "text/markdown")})
    assert r.status_code == 201, r.text
    stored = Path(r.json()["document"]["source"]).name
    assert stored.endswith(".md") and len(stored.encode()) <= 200 and stored.startswith("社内規程社内規程")
    assert _files(data_dir) == [stored]  # no temporary file left


def test_failed_and_deleted_uploads_leave_no_files(client, data_dir):
    enc = (DATA / "encrypted.pdf").read_bytes()
    assert client.post("/v1/documents", files={"file": ("secret.pdf", enc, "application/pdf")}).status_code == 422
    assert not (data_dir / "uploads").exists() or _files(data_dir) == []
    r = client.post("/v1/documents", files={"file": ("memo.md", b"# Memo\n\nThe canteen opens at 11:30.", "text/md")})
    assert r.status_code == 201 and _files(data_dir) == ["memo.md"]
    assert client.delete(f"/v1/documents/{r.json()['document']['id']}").status_code == 204
    assert _files(data_dir) == []


def test_uploading_a_changed_file_under_the_same_name_replaces_the_document(client, data_dir):
    first = client.post("/v1/documents", data={"acl": "group:hr"},
                        files={"file": ("canteen.md", b"# Canteen\n\nThe canteen opens at 11:30.", "text/markdown")})
    assert first.status_code == 201 and first.json()["status"] == "added"
    second = client.post("/v1/documents", data={"acl": "group:eng"},
                         files={"file": ("canteen.md", b"# Canteen\n\nThe canteen opens at 12:15 from May.",
                                         "text/markdown")})
    assert second.status_code == 201, second.text
    doc = second.json()["document"]
    assert second.json()["status"] == "updated" and doc["id"] == first.json()["document"]["id"]
    assert doc["acl"] == ["group:eng"]  # the new upload's access list, not the old one's
    hits = client.post("/v1/search", json={"query": "when does the canteen open", "top_k": 10}).json()["results"]
    texts = [h["text"] for h in hits if h["source"].endswith("canteen.md")]
    assert texts and all("12:15" in t and "11:30" not in t for t in texts)
    assert [d["source"] for d in client.get("/v1/documents", params={"limit": 500}).json()["documents"]
            ].count(doc["source"]) == 1
    # a changed file that cannot be ingested leaves the document, and its file, as they were
    good = (DATA / "multipage.pdf").read_bytes()
    kept = client.post("/v1/documents", files={"file": ("guide.pdf", good, "application/pdf")}).json()["document"]
    bad = client.post("/v1/documents", files={"file": ("guide.pdf", (DATA / "encrypted.pdf").read_bytes(),
                                                       "application/pdf")})
    assert bad.status_code == 422 and "password" in bad.json()["detail"]
    assert (data_dir / "uploads" / "guide.pdf").read_bytes() == good
    assert client.get(f"/v1/documents/{kept['id']}").json()["content_hash"] == kept["content_hash"]
    assert _files(data_dir) == ["canteen.md", "guide.pdf"]


def test_concurrent_administrator_writes_queue_instead_of_failing(client):
    """Access-list changes from many threads at once in one service all succeed, one after the other (995 of
    1,182 were refused with 409 before)."""
    from concurrent.futures import ThreadPoolExecutor

    docs = client.get("/v1/documents", params={"limit": 500}).json()["documents"][:4]

    def change(i: int) -> int:
        doc = docs[i % len(docs)]
        return client.put(f"/v1/documents/{doc['id']}/acl", json={"acl": [f"group:g{i}"]}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(change, range(24)))
    assert statuses == [200] * 24
