"""OIDC/JWT bearer tokens against a real JWKS served over HTTP on 127.0.0.1: signature, issuer, audience,
expiry, key rotation, an unreachable identity provider, and groups from the token deciding what is readable."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from service.auth import KeyStore

ISSUER = "https://idp.example.test/realms/corp"
AUDIENCE = "quelle"
LEAVE = "How many days of paid annual leave do I get?"


class Jwks:
    """An identity provider's key endpoint: serves whatever keys it currently publishes."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.ec_keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.fetches = 0
        self.hang = 0.0  # seconds each answer is held back (an identity provider in trouble)
        self.body: bytes | None = None  # answered instead of the key set when set
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                jwks.fetches += 1
                time.sleep(jwks.hang)
                keys = [{**json.loads(RSAAlgorithm.to_jwk(k.public_key())), "kid": kid, "use": "sig",
                         "alg": "RS256"} for kid, k in jwks.keys.items()]
                keys += [{**json.loads(ECAlgorithm.to_jwk(k.public_key())), "kid": kid, "use": "sig"}
                         for kid, k in jwks.ec_keys.items()]
                body = jwks.body if jwks.body is not None else json.dumps({"keys": keys}).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"

    def new_key(self, kid: str) -> rsa.RSAPrivateKey:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.keys[kid]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def token(key, kid: str, **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "carol", "iat": now, "exp": now + 300, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="RS256",
                      headers={"kid": kid})


def hs256(claims: dict, secret: bytes, kid: str) -> str:
    """The classic confusion attack: HMAC-signed with the RSA public key (PyJWT refuses to make one)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(hmac.new(secret, f'{head}.{body}'.encode(), hashlib.sha256).digest())}"


@pytest.fixture
def idp():
    server = Jwks()
    yield server
    server.close()


@pytest.fixture
def oidc_client(make_client, idp):
    return make_client(auth="keys", rate_limit=0, oidc_issuer=ISSUER, oidc_jwks_url=idp.url, oidc_audience=AUDIENCE,
                       oidc_refetch_seconds=0)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_valid_tokens_map_claims_to_user_and_groups(oidc_client, idp, data_dir):
    key = idp.new_key("k1")
    root = token(key, "k1", sub="root", groups=["admin"])
    docs = oidc_client.get("/v1/documents", params={"limit": 500}, headers=bearer(root)).json()["documents"]
    pdf = next(d for d in docs if d["source"].endswith("handbook/employee-handbook.pdf"))
    r = oidc_client.put(f"/v1/documents/{pdf['id']}/acl", json={"acl": ["group:hr", "user:dave"]},
                        headers=bearer(root))
    assert r.status_code == 200

    def top(tok: str) -> str:
        got = oidc_client.post("/v1/search", json={"query": LEAVE}, headers=bearer(tok))
        assert got.status_code == 200, got.text
        return got.json()["results"][0]["document_id"]

    assert top(token(key, "k1", groups=["hr"])) == pdf["id"]
    assert top(token(key, "k1", groups="eng hr")) == pdf["id"]  # a space-separated claim, as some IdPs send
    assert top(token(key, "k1", sub="dave", groups=[])) == pdf["id"]  # user:dave
    assert top(token(key, "k1", groups=["eng"])) != pdf["id"]
    assert oidc_client.put(f"/v1/documents/{pdf['id']}/acl", json={"acl": ["public"]},
                           headers=bearer(token(key, "k1", groups=["hr"]))).status_code == 403
    # API keys keep working beside tokens
    keys = KeyStore(data_dir / "keys.sqlite")
    api_key, _ = keys.create("svc-bot", ("hr",))
    keys.close()
    assert top(api_key) == pdf["id"]


def test_bad_tokens_are_401_with_the_reason(oidc_client, idp):
    key = idp.new_key("k1")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    cases = {
        "expired": (token(key, "k1", exp=now - 3600, iat=now - 7200), "expired"),
        "other issuer": (token(key, "k1", iss="https://evil.example"), "issuer"),
        "other audience": (token(key, "k1", aud="another-app"), "audience"),
        "no exp": (token(key, "k1", exp=None), "exp"),
        "forged signature": (token(other, "k1"), "signature"),
        "unknown kid": (token(other, "k9"), "invalid token"),
        "alg none": (jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60}, None,
                                algorithm="none", headers={"kid": "k1"}), "invalid token"),
        "hmac with the public key": (hs256({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60},
                                           public_pem, "k1"), "alg"),
        "garbage": ("not-a-token", "invalid token"),
        "groups not a list": (token(key, "k1", groups={"a": 1}), "groups"),
    }
    for name, (tok, reason) in cases.items():
        r = oidc_client.post("/v1/search", json={"query": LEAVE}, headers=bearer(tok))
        assert r.status_code == 401, (name, r.text)
        assert reason in r.json()["detail"].lower(), (name, r.json()["detail"])
        assert r.headers["www-authenticate"] == "Bearer"


def test_a_rotated_key_is_fetched_and_an_unreachable_idp_is_503(oidc_client, idp):
    first = idp.new_key("k1")
    assert oidc_client.post("/v1/search", json={"query": LEAVE},
                            headers=bearer(token(first, "k1"))).status_code == 200
    fetched = idp.fetches
    second = idp.new_key("k2")  # the IdP rotates: a new kid appears in the JWKS
    assert oidc_client.post("/v1/search", json={"query": LEAVE},
                            headers=bearer(token(second, "k2"))).status_code == 200
    assert idp.fetches == fetched + 1
    idp.close()  # the identity provider goes away; a token with a kid not yet cached cannot be checked
    r = oidc_client.post("/v1/search", json={"query": LEAVE}, headers=bearer(token(idp.new_key("k3"), "k3")))
    assert r.status_code == 503 and r.headers["retry-after"] and "identity provider" in r.json()["detail"]


def test_a_token_whose_algorithm_does_not_fit_its_key_is_a_401(oidc_client, idp):
    rsa_key = idp.new_key("r1")
    idp.ec_keys["e1"] = ec_key = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "carol", "exp": now + 300}
    good = jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "e1"})
    assert oidc_client.post("/v1/search", json={"query": LEAVE}, headers=bearer(good)).status_code == 200
    for tok in (jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "e1"}),  # RS256 naming an EC key
                jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "r1"}),  # ES256 naming an RSA key
                jwt.encode(claims, ec.generate_private_key(ec.SECP384R1()), algorithm="ES384",
                           headers={"kid": "e1"})):  # ES384 naming a P-256 key
        r = oidc_client.post("/v1/search", json={"query": LEAVE}, headers=bearer(tok))
        assert r.status_code == 401 and "does not fit" in r.json()["detail"], r.text


def test_an_identity_provider_that_answers_garbage_is_a_503(oidc_client, idp):
    idp.new_key("k1")
    for body in (b"<html>maintenance</html>", b'{"keys": "none"}', b"[]"):
        idp.body = body
        r = oidc_client.post("/v1/search", json={"query": LEAVE}, headers=bearer(token(idp.keys["k1"], "k1")))
        assert r.status_code == 503 and "not a JSON Web Key Set" in r.json()["detail"], r.text


def test_a_hanging_identity_provider_costs_one_fetch_and_never_blocks_api_keys(make_client, idp, data_dir):
    """While the JWKS endpoint hangs, 60 tokens with random kids at once: one fetch, every one answered 503
    within the fetch timeout (+1 s), none refetching within QUELLE_OIDC_REFETCH_SECONDS (failed fetches count),
    and an API-key search made meanwhile is answered at its usual speed (before, each kid started its own
    5 s fetch on the threads every request shares: a search took 74 s)."""
    from concurrent.futures import ThreadPoolExecutor

    keys = KeyStore(data_dir / "keys.sqlite")
    api_key, _ = keys.create("svc-bot", ("staff",))
    keys.close()
    client = make_client(auth="keys", rate_limit=0, oidc_issuer=ISSUER, oidc_jwks_url=idp.url,
                         oidc_audience=AUDIENCE, oidc_refetch_seconds=30, oidc_timeout=2)
    assert client.post("/v1/search", json={"query": LEAVE}, headers=bearer(api_key)).status_code == 200
    idp.hang = 4.0
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tokens = [token(signer, f"random-{i}") for i in range(60)]

    def ask(tok: str) -> tuple[int, float]:
        started = time.monotonic()
        r = client.post("/v1/search", json={"query": LEAVE}, headers=bearer(tok))
        return r.status_code, time.monotonic() - started

    with ThreadPoolExecutor(61) as pool:
        pending = [pool.submit(ask, t) for t in tokens]
        time.sleep(0.5)  # the fetch is hanging now, and the token checks waiting on it
        search = pool.submit(ask, api_key).result()
        answers = [f.result() for f in pending]
    assert search[0] == 200 and search[1] < 1.5, search
    assert {status for status, _ in answers} == {503}, answers
    assert max(took for _, took in answers) < 2 + 1 + 2, answers  # the fetch timeout, the lock's wait, slack
    assert idp.fetches == 1
    r = client.post("/v1/search", json={"query": LEAVE}, headers=bearer(token(signer, "another")))
    assert r.status_code == 503 and r.headers["retry-after"] and idp.fetches == 1  # no refetch in the pause


def test_known_keys_outlive_their_cache_time_while_the_provider_is_down(oidc_client, idp):
    key = idp.new_key("k1")
    assert oidc_client.post("/v1/search", json={"query": LEAVE}, headers=bearer(token(key, "k1"))).status_code == 200
    oidc_client.app.state.services.oidc.keys.lifespan = 0  # the cached keys are due for a refresh
    idp.body = b"502 Bad Gateway"
    assert oidc_client.post("/v1/search", json={"query": LEAVE}, headers=bearer(token(key, "k1"))).status_code == 200


def test_an_oidc_user_and_an_api_key_of_the_same_name_never_share_a_conversation(oidc_client, idp, data_dir):
    keys = KeyStore(data_dir / "keys.sqlite")
    api_key, _ = keys.create("carol", ("staff",))
    keys.close()
    tok = token(idp.new_key("k1"), "k1", sub="carol")
    assert oidc_client.post("/v1/ask", json={"question": LEAVE, "session_id": "s1"},
                            headers=bearer(api_key)).status_code == 200
    assert oidc_client.post("/v1/ask", json={"question": "What is the per diem outside Europe?",
                                             "session_id": "s1"}, headers=bearer(tok)).status_code == 200
    store = oidc_client.app.state.services.answers.conversations
    assert [t.question for t in store.memory("s1", "key:carol").turns] == [LEAVE]
    assert [t.question for t in store.memory("s1", "oidc:carol").turns] == ["What is the per diem outside Europe?"]
