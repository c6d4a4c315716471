from __future__ import annotations

from pathlib import Path


def test_search_returns_ranked_chunks_with_their_origin(client):
    r = client.post("/v1/search", json={"query": "What is the per diem outside Europe?", "top_k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    results = body["results"]
    assert len(results) == 3 and body["generation"] >= 1
    top = results[0]
    assert top["source"].endswith("travel-and-expenses.docx") and top["heading_path"] == ["Per diem"]
    assert "80 EUR" in top["text"] and top["title"] == "Travel and Expenses Policy"
    assert top["dense_score"] > 0.4 and top["keyword_score"] > 0
    assert results[0]["score"] >= results[1]["score"] >= results[2]["score"]


def test_pdf_hits_carry_their_page(client):
    r = client.post("/v1/search", json={"query": "basalt budget reviewed by finance", "top_k": 1})
    top = r.json()["results"][0]
    assert Path(top["source"]).name == "multipage.pdf" and top["page"] == 2


def test_keyword_path_finds_japanese_and_chinese_without_spaces(client):
    ja = client.post("/v1/search", json={"query": "通勤手当", "top_k": 1, "mode": "keyword"}).json()["results"]
    assert "通勤手当は月額二万円" in ja[0]["text"] and ja[0]["page"] == 5
    zh = client.post("/v1/search", json={"query": "门禁卡遗失", "top_k": 1, "mode": "keyword"}).json()["results"]
    assert "门禁卡" in zh[0]["text"]


def test_modes_use_one_path_each(client):
    dense = client.post("/v1/search", json={"query": "laptop replacement", "mode": "dense"}).json()["results"]
    kw = client.post("/v1/search", json={"query": "laptop replacement", "mode": "keyword"}).json()["results"]
    assert all(r["keyword_score"] is None for r in dense)
    assert all(r["dense_score"] is None for r in kw)


def test_filters_restrict_before_ranking(client):
    r = client.post("/v1/search", json={"query": "per diem", "top_k": 5, "filters": {"kinds": ["pdf"]}}).json()
    assert len(r["results"]) == 5 and all(x["source"].endswith(".pdf") for x in r["results"])
    doc_id = r["results"][0]["document_id"]
    only = client.post("/v1/search", json={"query": "anything at all", "filters": {"document_ids": [doc_id]}}).json()
    assert {x["document_id"] for x in only["results"]} == {doc_id}


def test_bad_input_is_a_422_that_names_the_field(client):
    for body, field in [({"query": "   "}, "query"), ({"query": "x", "top_k": 0}, "top_k"),
                        ({"query": "x", "top_k": 51}, "top_k"), ({"top_k": 3}, "query"),
                        ({"query": "x", "mode": "magic"}, "mode"), ({"query": "x", "bogus": 1}, "bogus"),
                        ({"query": "x", "filters": {"kinds": ["exe"]}}, "filters.kinds.0")]:
        r = client.post("/v1/search", json=body)
        assert r.status_code == 422, (body, r.text)
        assert field in [d["field"] for d in r.json()["detail"]], r.json()
        assert field in r.json()["error"]
    r = client.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_oversized_body_is_a_413(make_client):
    small = make_client(max_body_bytes=2048)
    r = small.post("/v1/search", json={"query": "x" * 5000})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert small.post("/v1/search", json={"query": "per diem"}).status_code == 200


def test_every_response_has_a_request_id(client):
    r = client.post("/v1/search", json={"query": "leave"}, headers={"x-request-id": "abc123"})
    assert r.headers["x-request-id"] == "abc123"
    assert len(client.get("/healthz").headers["x-request-id"]) == 16


def test_cpu_work_queues_behind_a_bounded_gate(make_client):
    """With one slot, concurrent searches and answers all complete (no deadlock between the gated steps) and
    the gate never admits two at once."""
    import threading
    import time

    client = make_client(max_concurrent=1)
    gate = client.app.state.services.gate
    inside, most = [0], [0]
    real_search = client.app.state.services.retriever.search

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.02)
            return real_search(*args, **kwargs)
        finally:
            inside[0] -= 1

    client.app.state.services.retriever.search = counting
    results: list[int] = []

    def hit(i: int) -> None:
        if i % 2:
            results.append(client.post("/v1/ask", json={"question": "How long is parental leave?"}).status_code)
        else:
            results.append(client.post("/v1/search", json={"query": "parental leave"}).status_code)

    threads = [threading.Thread(target=hit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [200] * 8 and most[0] == 1
    assert gate.busy == 0 and gate.waiting == 0  # every slot was given back
