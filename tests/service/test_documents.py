from __future__ import annotations

from pathlib import Path

from index.faiss_store import FaissSqliteStore
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


def test_upload_names_cannot_escape_the_upload_folder(client, data_dir):
    r = client.post("/v1/documents", files={"file": ("../../../evil.md", b"# Evil\n\nText here.", "text/markdown")})
    assert r.status_code == 201
    source = Path(r.json()["document"]["source"])
    assert (data_dir / "uploads").resolve() in source.parents and source.name == "evil.md"


def test_upload_size_is_limited(make_client):
    client = make_client(max_upload_bytes=4096)
    r = client.post("/v1/documents", files={"file": ("big.md", b"# Big\n\n" + b"word " * 5000, "text/markdown")})
    assert r.status_code == 413
