from __future__ import annotations

import json
import logging


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["generation"] >= 1
    assert ready["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert ready["documents"] > 0 and "warning" not in ready


def test_serving_an_empty_index_says_so_in_the_log_and_in_readyz(tmp_path, embedder, caplog):
    from fastapi.testclient import TestClient

    from index.embedded import FaissSqliteStore
    from service.app import create_app
    from service.config import Settings

    with FaissSqliteStore(tmp_path, model_id=embedder.model_id, dim=embedder.dim, writable=True) as store:
        store.commit()
    with caplog.at_level(logging.WARNING, "quelle.service"), \
            TestClient(create_app(Settings(_env_file=None, data_dir=tmp_path, auth="off"), embedder=embedder)) as c:
        ready = c.get("/readyz")
    assert ready.status_code == 200 and ready.json()["documents"] == 0 and "no documents" in ready.json()["warning"]
    assert any("holds no documents" in r.getMessage() for r in caplog.records)


def test_metrics_in_prometheus_format(client):
    client.post("/v1/search", json={"query": "leave"})
    client.post("/v1/search", json={"query": ""})
    text = client.get("/metrics").text
    assert 'quelle_requests_total{method="POST",route="/v1/search",status="200"} 1.0' in text
    assert 'quelle_requests_total{method="POST",route="/v1/search",status="422"} 1.0' in text
    assert 'quelle_request_seconds_count{route="/v1/search"} 2.0' in text
    assert "quelle_retrieval_seconds_count 1.0" in text
    assert "quelle_index_chunks " in text and "quelle_index_documents 13.0" in text


def test_openapi_declares_every_status(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths["/v1/ask"]["post"]["responses"]) >= {"200", "413", "422", "503"}
    assert set(paths["/v1/search"]["post"]["responses"]) >= {"200", "413", "422"}
    assert set(paths["/v1/documents/{document_id}"]["delete"]["responses"]) >= {"204", "404", "409", "422"}
    assert set(paths["/v1/documents"]["post"]["responses"]) >= {"201", "409", "413", "422", "501"}
    assert "text/event-stream" in paths["/v1/ask"]["post"]["responses"]["200"]["content"]


def test_json_logs_carry_the_request_id(client, capsys):
    from service.logs import JsonFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("quelle.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        client.get("/healthz", headers={"x-request-id": "req-42"})
    finally:
        access.removeHandler(handler)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["request_id"] == "req-42" and line["route"] == "/healthz" and line["status"] == 200


def test_the_service_follows_new_generations_without_restart(client, data_dir, embedder):
    from pathlib import Path

    from index.embedded import FaissSqliteStore
    from ingest.chunking import Chunker
    from ingest.pipeline import Ingestor

    before = client.get("/readyz").json()["generation"]
    new = data_dir.parent / "new"
    new.mkdir()
    (new / "canteen.md").write_text("# Canteen\n\nThe canteen serves ramen every Thursday.\n")
    with FaissSqliteStore(data_dir, model_id=embedder.model_id, dim=embedder.dim, writable=True) as store:
        Ingestor(store, embedder, Chunker(embedder.tokenizer)).run([Path(new)])
    hits = client.post("/v1/search", json={"query": "when is ramen served", "top_k": 1}).json()
    assert hits["generation"] == before + 1 and "ramen" in hits["results"][0]["text"]


def test_no_redirect_reflects_the_callers_host_header(client):
    """A trailing slash used to answer 307 with a Location built from the Host header the caller sent."""
    for path in ("/v1/documents/", "/healthz/", "/v1/search/"):
        r = client.request("GET" if "search" not in path else "POST", path, headers={"Host": "evil.example"},
                           json={"query": "leave"} if "search" in path else None, follow_redirects=False)
        assert r.status_code == 404 and "location" not in r.headers, (path, r.status_code, r.headers)
        assert "evil.example" not in r.text


def test_a_wrong_method_names_the_allowed_ones_and_a_body_without_json_says_what_to_send(client):
    r = client.get("/v1/ask")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.json()["detail"].endswith("allowed: POST")
    r = client.get("/v1/documents/abc/acl")
    assert r.status_code == 405 and "PUT" in r.headers["allow"]
    for headers in ({}, {"content-type": "application/x-www-form-urlencoded"}):
        r = client.post("/v1/ask", content=b'{"question": "How long is parental leave?"}', headers=headers)
        assert r.status_code == 422 and "Content-Type: application/json" in r.json()["error"], r.text
    r = client.post("/v1/ask", json={"question": 5})  # JSON with a wrong field still names the field
    assert r.status_code == 422 and "question" in r.json()["error"]


def test_api_docs_work_offline_and_the_root_points_somewhere_useful(client):
    import re

    root = client.get("/")
    assert root.status_code == 200 and root.json()["links"]["api_docs"] == "/docs"
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html.text)
        assert urls and not [u for u in urls if "//" in u], (page, urls)  # nothing from a CDN
        for url in urls:
            got = client.get(url)
            assert got.status_code == 200 and len(got.content) > 1000, url
    js = client.get("/static-offline-docs/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in js and "3.1" in js  # Swagger UI 5: renders the OpenAPI 3.1 schema
