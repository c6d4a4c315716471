"""Document permissions end to end: keys with groups, access lists set through the API, every route that could
show a document (search, ask, streaming, documents, conversations, metrics) checked with real keys."""

from __future__ import annotations

import pytest

from service.auth import KeyStore
from tests.llm_server import Reply
from tests.service.test_ask import sse_events

LEAVE = "How many days of paid annual leave do I get?"


def make_world(make_client, data_dir, **settings):
    """A service with keys on, an administrator, alice (hr), bob (eng); the handbook PDF readable by hr only."""
    keys = KeyStore(data_dir / "keys.sqlite")
    tokens = {name: keys.create(name, groups)[0] for name, groups in
              [("root", ("admin",)), ("alice", ("hr",)), ("bob", ("eng",))]}
    keys.close()
    client = make_client(auth="keys", rate_limit=0, **settings)
    auth = {name: {"Authorization": f"Bearer {key}"} for name, key in tokens.items()}
    docs = client.get("/v1/documents", params={"limit": 500}, headers=auth["root"]).json()["documents"]
    pdf = next(d for d in docs if d["source"].endswith("handbook/employee-handbook.pdf"))
    r = client.put(f"/v1/documents/{pdf['id']}/acl", json={"acl": ["group:hr"]}, headers=auth["root"])
    assert r.status_code == 200 and r.json()["acl"] == ["group:hr"]
    return client, auth, pdf, len(docs)


@pytest.fixture
def world(make_client, data_dir):
    return make_world(make_client, data_dir)


def test_search_never_shows_and_never_shortens_for_unreadable_documents(world):
    client, auth, pdf, _ = world
    hr = client.post("/v1/search", json={"query": LEAVE, "top_k": 5}, headers=auth["alice"]).json()["results"]
    assert hr[0]["document_id"] == pdf["id"]
    eng = client.post("/v1/search", json={"query": LEAVE, "top_k": 5}, headers=auth["bob"]).json()["results"]
    assert len(eng) == 5 and pdf["id"] not in {r["document_id"] for r in eng}
    assert all(pdf["source"] not in r["also_in"] for r in eng)
    # exactly what an administrator gets with that document filtered out: same chunks, same scores
    others = [d["id"] for d in client.get("/v1/documents", params={"limit": 500}, headers=auth["root"]).json()
              ["documents"] if d["id"] != pdf["id"]]
    ref = client.post("/v1/search", json={"query": LEAVE, "top_k": 5, "filters": {"document_ids": others}},
                      headers=auth["root"]).json()["results"]
    assert [(r["chunk_id"], r["score"]) for r in eng] == [(r["chunk_id"], r["score"]) for r in ref]
    for mode in ("dense", "keyword"):
        got = client.post("/v1/search", json={"query": "annual leave 25 days", "mode": mode},
                          headers=auth["bob"]).json()["results"]
        assert pdf["id"] not in {r["document_id"] for r in got}, mode


def test_documents_list_and_get_hide_what_the_caller_cannot_read(world):
    client, auth, pdf, total = world
    bob = client.get("/v1/documents", params={"limit": 500}, headers=auth["bob"]).json()
    assert bob["total"] == total - 1 and pdf["id"] not in {d["id"] for d in bob["documents"]}
    assert all(d["acl"] is None for d in bob["documents"])  # access lists are for administrators
    hidden = client.get(f"/v1/documents/{pdf['id']}", headers=auth["bob"])
    unknown = client.get("/v1/documents/0123456789abcdef", headers=auth["bob"])
    assert hidden.status_code == unknown.status_code == 404  # the same answer as for no document at all
    assert hidden.json()["error"] == unknown.json()["error"]
    alice = client.get(f"/v1/documents/{pdf['id']}", headers=auth["alice"])
    assert alice.status_code == 200 and alice.json()["acl"] is None
    assert client.get("/v1/documents", params={"limit": 500}, headers=auth["alice"]).json()["total"] == total


def test_answers_streams_and_metrics_never_reveal_an_unreadable_document(world):
    client, auth, pdf, _ = world
    hr = client.post("/v1/ask", json={"question": LEAVE}, headers=auth["alice"]).json()
    assert "25 days" in hr["answer"] and hr["citations"][0]["source"] == pdf["source"]
    for stream in (False, True):
        r = client.post("/v1/ask", json={"question": LEAVE, "stream": stream}, headers=auth["bob"])
        assert r.status_code == 200
        assert "25 days" not in r.text and pdf["source"] not in r.text and pdf["id"] not in r.text
        if stream:
            assert [e for e, _ in sse_events(r.text)][-1] == "done"
    metrics = client.get("/metrics").text
    assert pdf["source"] not in metrics and pdf["id"] not in metrics and "25 days" not in metrics


def test_only_administrators_change_documents(world):
    client, auth, pdf, _ = world
    for who in ("alice", "bob"):
        h = auth[who]
        assert client.put(f"/v1/documents/{pdf['id']}/acl", json={"acl": ["public"]}, headers=h).status_code == 403
        assert client.delete(f"/v1/documents/{pdf['id']}", headers=h).status_code == 403
        up = client.post("/v1/documents", files={"file": ("x.md", b"# X\n\nhello", "text/markdown")}, headers=h)
        assert up.status_code == 403 and "admin" in up.json()["detail"]
    root = auth["root"]
    bad = client.put(f"/v1/documents/{pdf['id']}/acl", json={"acl": ["group:hr", "everyone"]}, headers=root)
    assert bad.status_code == 422 and "'everyone'" in bad.json()["error"]
    assert client.put(f"/v1/documents/{pdf['id']}/acl", json={"acl": []}, headers=root).status_code == 422
    missing = client.put("/v1/documents/0123456789abcdef/acl", json={"acl": ["public"]}, headers=root)
    assert missing.status_code == 404
    up = client.post("/v1/documents", data={"acl": "group:eng, user:alice"},
                     files={"file": ("eng-notes.md", b"# Build farm\n\nThe build farm password rotates every "
                                                     b"Tuesday.", "text/markdown")}, headers=root)
    assert up.status_code == 201 and up.json()["document"]["acl"] == ["group:eng", "user:alice"]
    for who, sees in (("alice", True), ("bob", True)):
        got = client.post("/v1/search", json={"query": "build farm password"}, headers=auth[who]).json()
        assert (got["results"][0]["source"].endswith("eng-notes.md")) is sees
    bad_up = client.post("/v1/documents", data={"acl": "group:"}, headers=root,
                         files={"file": ("y.md", b"# Y\n\nhello", "text/markdown")})
    assert bad_up.status_code == 422 and "acl" in bad_up.json()["error"]


def test_a_revocation_holds_from_the_next_request(world):
    client, auth, pdf, _ = world
    h = auth["alice"]
    assert client.post("/v1/search", json={"query": LEAVE}, headers=h).json()["results"][0]["document_id"] == pdf["id"]
    assert client.put(f"/v1/documents/{pdf['id']}/acl", json={"acl": ["group:legal"]},
                      headers=auth["root"]).status_code == 200
    got = client.post("/v1/search", json={"query": LEAVE}, headers=h).json()["results"]
    assert pdf["id"] not in {r["document_id"] for r in got}
    assert client.get(f"/v1/documents/{pdf['id']}", headers=h).status_code == 404


def test_conversations_belong_to_their_caller_and_forget_revoked_documents(make_client, data_dir, llm):
    client, auth, pdf, _ = make_world(make_client, data_dir, llm_base_url=llm.base_url, llm_model="scripted",
                                      llm_api_key="k", llm_timeout=5, llm_max_retries=0)
    llm.default = "I cannot find that in the documents."
    llm.script("You get 25 days of paid annual leave [1].")
    first = client.post("/v1/ask", json={"question": LEAVE}, headers=auth["alice"]).json()
    sid = first["session_id"]
    assert "25 days" in first["answer"] and first["citations"][0]["source"] == pdf["source"]
    # session ids are per caller: bob using alice's id starts a conversation of his own, which tells him
    # nothing (no 404 against 200 to test ids with) and recalls nothing of hers
    mark = len(llm.requests)
    llm.script("Parental leave is 20 weeks [1].")  # a fresh conversation: no rewrite of the question
    other = client.post("/v1/ask", json={"question": "And parental leave?", "session_id": sid}, headers=auth["bob"])
    assert other.status_code == 200 and other.json()["session_id"] == sid and "25 days" not in other.text
    assert all("25 days" not in str(r["body"]["messages"]) for r in llm.requests[mark:])

    def sent_since(mark: int) -> str:
        return "".join(str(r["body"]["messages"]) for r in llm.requests[mark:])

    mark = len(llm.requests)  # control: while alice may read it, her history carries the answer
    llm.script("Rewritten: parental leave length", "Parental leave is 20 weeks [1].")
    assert client.post("/v1/ask", json={"question": "And parental leave?", "session_id": sid},
                       headers=auth["alice"]).status_code == 200
    assert "25 days" in sent_since(mark)

    client.put(f"/v1/documents/{pdf['id']}/acl", json={"acl": ["group:legal"]}, headers=auth["root"])
    mark = len(llm.requests)
    follow = client.post("/v1/ask", json={"question": "And how much of it do I get?", "session_id": sid},
                         headers=auth["alice"])
    assert follow.status_code == 200 and "25 days" not in follow.text and "20 weeks" not in follow.text
    assert "25 days" not in sent_since(mark) and "20 weeks" not in sent_since(mark)


def test_an_obedient_model_cannot_reveal_a_document_the_caller_may_not_read(make_client, data_dir, llm):
    """The model only ever sees what the caller may read: even one that repeats its whole prompt, plain and
    streamed, cannot hand bob the hr-only handbook."""
    client, auth, pdf, _ = make_world(make_client, data_dir, llm_base_url=llm.base_url, llm_model="scripted",
                                      llm_api_key="k", llm_timeout=5, llm_max_retries=0)
    for stream in (False, True):
        llm.script(Reply(echo_prompt=True))
        r = client.post("/v1/ask", json={"question": LEAVE, "stream": stream}, headers=auth["bob"])
        assert r.status_code == 200
        sent = str(llm.requests[-1]["body"]["messages"]) if llm.requests else ""
        assert "25 days" not in sent and pdf["source"] not in sent
        assert "25 days" not in r.text and pdf["source"] not in r.text and pdf["id"] not in r.text
    llm.script(Reply(echo_prompt=True))  # control: alice's prompt does hold it, so the echo would show it
    r = client.post("/v1/ask", json={"question": LEAVE}, headers=auth["alice"])
    assert "25 days" in str(llm.requests[-1]["body"]["messages"])


def _post_unfinished_upload(client, headers: dict[str, str]) -> tuple[int, int]:
    """POST /v1/documents through the app as a server would, with a 40 MB body of which one chunk ever arrives
    (a never-finished upload): returns the status and how many times the app asked for body."""
    import anyio

    asked = 0

    async def go() -> int:
        nonlocal asked
        sent: list[dict] = []

        async def receive() -> dict:
            nonlocal asked
            asked += 1
            if asked == 1:
                return {"type": "http.request", "body": b"--x\r\n" + b"a" * 60_000, "more_body": True}
            await anyio.sleep_forever()
            raise AssertionError

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/documents", "raw_path": b"/v1/documents", "query_string": b"",
                 "root_path": "", "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
                 "headers": [(b"host", b"testserver"), (b"content-length", b"40000000"),
                             (b"content-type", b"multipart/form-data; boundary=x"),
                             *((k.lower().encode(), v.encode()) for k, v in headers.items())]}
        with anyio.fail_after(10):  # a server that waits for the body never answers
            await client.app(scope, receive, send)
        return next(m["status"] for m in sent if m["type"] == "http.response.start")

    return client.portal.call(go), asked


def test_uploads_are_refused_before_their_body_is_read(world, data_dir):
    """An anonymous or non-administrator upload is answered before a byte of its body is read: nothing is
    spooled to disk for a caller who may not upload (20 such uploads held 900 MB in /tmp)."""
    client, auth, _, _ = world
    for headers, status in (({}, 401), ({"Authorization": "Bearer qk_bad_key"}, 401), (auth["bob"], 403)):
        assert _post_unfinished_upload(client, headers) == (status, 0), headers
    ok = client.post("/v1/documents", files={"file": ("x.md", b"# X\n\nhello there", "text/markdown")},
                     headers=auth["root"])
    assert ok.status_code == 201, ok.text


def test_a_session_id_cannot_be_squatted_and_one_caller_cannot_grow_storage_without_bound(make_client, data_dir):
    """bob takes the id alice is about to use: alice's conversation is still hers alone. And however many
    conversations one key starts, it keeps QUELLE_MAX_SESSIONS_PER_CALLER of them."""
    client, auth, _, _ = make_world(make_client, data_dir, max_sessions_per_caller=3)
    assert client.post("/v1/ask", json={"question": "What is the per diem outside Europe?", "session_id": "standup"},
                       headers=auth["bob"]).status_code == 200
    mine = client.post("/v1/ask", json={"question": LEAVE, "session_id": "standup"}, headers=auth["alice"])
    assert mine.status_code == 200 and not mine.json()["abstained"]
    store = client.app.state.services.answers.conversations
    assert [t.question for t in store.memory("standup", "key:alice").turns] == [LEAVE]
    assert [t.question for t in store.memory("standup", "key:bob").turns] == ["What is the per diem outside Europe?"]
    for i in range(8):
        assert client.post("/v1/ask", json={"question": LEAVE, "session_id": f"s{i}"},
                           headers=auth["bob"]).status_code == 200
    assert store.sessions("key:bob") == 3 and store.sessions("key:alice") == 1
    assert [store.memory(f"s{i}", "key:bob").total_turns for i in (5, 6, 7)] == [1, 1, 1]  # the latest kept
