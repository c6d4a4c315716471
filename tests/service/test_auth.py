"""API keys: created and revoked with `quelle keys`, stored hashed, required by every /v1 route."""

from __future__ import annotations

import sqlite3

import pytest

from service.auth import AuthError, KeyStore, parse_groups
from tests.cli.test_cli import quelle

V1 = [("post", "/v1/search", {"json": {"query": "annual leave"}}),
      ("post", "/v1/ask", {"json": {"question": "How many days of annual leave?"}}),
      ("get", "/v1/documents", {}),
      ("get", "/v1/documents/0123456789abcdef", {}),
      ("delete", "/v1/documents/0123456789abcdef", {}),
      ("get", "/v1/documents/0123456789abcdef/pages/1", {}),
      ("get", "/v1/documents/0123456789abcdef/section", {"params": {"chunk": "c"}}),
      ("get", "/v1/me", {}),
      ("get", "/v1/ingest/report", {})]


def test_keys_are_stored_hashed_verified_and_revoked(tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite")
    key, info = store.create("alice", ("eng", "hr"))
    assert key.startswith(f"qk_{info.id}_")
    who = store.verify(key)
    assert (who.name, who.groups, who.key_id) == ("alice", frozenset({"eng", "hr"}), info.id)
    secret = key.split("_", 2)[2]
    dump = "\n".join(sqlite3.connect(tmp_path / "keys.sqlite").iterdump())
    assert secret not in dump and info.id in dump
    for bad in ("", "qk_nope", key[:-1] + ("A" if key[-1] != "A" else "B"), f"qk_{'0' * 12}_{secret}",
                "Bearer " + key):
        with pytest.raises(AuthError):
            store.verify(bad)
    assert [k.id for k in store.revoke("alice")] == [info.id]
    with pytest.raises(AuthError, match="revoked"):
        store.verify(key)
    assert store.revoke("alice") == []
    store.close()
    with pytest.raises(Exception, match="group 'a b'"):
        parse_groups("a b,c")
    assert parse_groups(" hr, eng,hr ") == ("eng", "hr")


def test_every_v1_route_needs_a_valid_key(make_client, data_dir):
    client = make_client(auth="keys")
    for method, path, kw in V1:
        got = getattr(client, method)(path, **kw)
        assert got.status_code == 401, path
        assert got.headers["www-authenticate"] == "Bearer" and "API key" in got.json()["detail"]
        got = getattr(client, method)(path, headers={"Authorization": "Bearer qk_bad_key"}, **kw)
        assert got.status_code == 401 and got.json()["detail"] == "unknown API key"
    for open_path in ("/healthz", "/readyz", "/metrics", "/client-config", "/ui/app.js"):
        assert client.get(open_path).status_code == 200

    store = KeyStore(data_dir / "keys.sqlite")
    key, _ = store.create("alice", ("staff",))
    auth = {"Authorization": f"Bearer {key}"}
    assert client.post("/v1/search", json={"query": "annual leave"}, headers=auth).status_code == 200
    assert client.get("/v1/documents", headers=auth).status_code == 200
    store.revoke("alice")  # from another process's point of view: the next request fails
    assert client.post("/v1/search", json={"query": "annual leave"}, headers=auth).status_code == 401
    store.close()


def test_openapi_declares_bearer_auth_and_401():
    from service.app import create_app
    from service.config import Settings

    schema = create_app(Settings(_env_file=None)).openapi()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, ops in schema["paths"].items():
        for op in ops.values():
            if path in SIGNED:  # called by other systems: their signature instead of a key
                headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
                assert "401" in op["responses"] and SIGNED[path] in headers and "security" not in op, path
            elif path.startswith("/v1"):
                assert "401" in op["responses"] and op["security"] == [{"HTTPBearer": []}], path
            else:
                assert "security" not in op, path
    assert set(SIGNED) <= set(schema["paths"])


SIGNED = {"/v1/hooks/ingest": "x-quelle-signature", "/v1/hooks/github": "x-hub-signature-256",
          "/v1/chat/slack/events": "x-slack-signature"}


def test_signed_routes_are_off_without_their_secret(make_client):
    client = make_client(auth="keys")
    for path in SIGNED:
        got = client.post(path, content=b"{}", headers={"Content-Type": "application/json"})
        assert got.status_code == 404 and "QUELLE_" in got.json()["detail"], path


def test_keys_command(tmp_path):
    made = quelle("keys", "create", "--name", "bob", "--groups", "finance,legal", "--data-dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("qk_") and "not shown again" in made.stderr
    listed = quelle("keys", "list", "--data-dir", str(tmp_path))
    assert "bob" in listed.stdout and "finance,legal" in listed.stdout and key not in listed.stdout
    assert KeyStore(tmp_path / "keys.sqlite").verify(key).groups == {"finance", "legal"}
    assert quelle("keys", "revoke", "bob", "--data-dir", str(tmp_path)).returncode == 0
    again = quelle("keys", "revoke", "bob", "--data-dir", str(tmp_path))
    assert again.returncode == 1 and "no active key" in again.stderr
    bad = quelle("keys", "create", "--name", "x", "--groups", "a b", "--data-dir", str(tmp_path))
    assert bad.returncode == 1 and "group 'a b'" in bad.stderr


def test_token_bucket_refills_at_the_rate():
    from service.ratelimit import RateLimited, RateLimiter

    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(RateLimited) as exc:
        limiter.check("a")
    assert exc.value.retry_after == pytest.approx(0.5)
    limiter.check("b")  # another key has its own bucket
    now[0] = 0.5
    limiter.check("a")
    with pytest.raises(RateLimited):
        limiter.check("a")
    now[0] = 100.0
    for _ in range(3):  # refilled up to the burst, not beyond
        limiter.check("a")
    with pytest.raises(RateLimited):
        limiter.check("a")


def test_a_key_over_its_rate_gets_429_with_retry_after(make_client, data_dir):
    client = make_client(auth="keys", rate_limit=0.5, rate_burst=2)
    store = KeyStore(data_dir / "keys.sqlite")
    fast, _ = store.create("fast")
    other, _ = store.create("other")
    store.close()
    headers = {"Authorization": f"Bearer {fast}"}
    assert [client.get("/v1/documents", headers=headers).status_code for _ in range(2)] == [200, 200]
    limited = client.get("/v1/documents", headers=headers)
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 2
    assert "rate limit" in limited.json()["detail"]
    assert client.get("/v1/documents", headers={"Authorization": f"Bearer {other}"}).status_code == 200
