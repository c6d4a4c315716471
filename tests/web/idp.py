"""An OpenID Connect provider on 127.0.0.1 for the web page's sign-in: authorization code with PKCE, a token
endpoint that browsers may call (CORS), and the key set the service checks tokens against."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://idp.example.test/realms/corp"
AUDIENCE = "quelle"
CLIENT_ID = "quelle-web"


class Provider:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.user = {"sub": "carol", "groups": ["hr"]}  # who signs in at the next authorization
        self.codes: dict[str, tuple[str, str, dict]] = {}  # code -> (challenge, redirect_uri, claims)
        self.refused: list[str] = []  # why token requests were refused
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("access-control-allow-origin", "*")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/certs":
                    key = {**json.loads(RSAAlgorithm.to_jwk(idp.key.public_key())), "kid": "k1", "use": "sig",
                           "alg": "RS256"}
                    self._send(200, {"keys": [key]})
                elif url.path == "/authorize":
                    if q.get("client_id") != CLIENT_ID or q.get("code_challenge_method") != "S256" \
                            or not q.get("code_challenge") or q.get("response_type") != "code":
                        self._send(400, {"error": "invalid_request"})
                        return
                    code = secrets.token_urlsafe(16)
                    idp.codes[code] = (q["code_challenge"], q["redirect_uri"], dict(idp.user))
                    back = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")})
                    self.send_response(302)
                    self.send_header("location", back)
                    self.end_headers()
                else:
                    self._send(404, {"error": "not_found"})

            def do_POST(self) -> None:  # noqa: N802
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers.get("content-length", 0)))
                                                          .decode()).items()}
                got = idp.codes.pop(form.get("code", ""), None)
                if got is None:
                    idp.refused.append("unknown code")
                    self._send(400, {"error": "invalid_grant"})
                    return
                challenge, redirect, claims = got
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge \
                        or form.get("redirect_uri") != redirect or form.get("client_id") != CLIENT_ID:
                    idp.refused.append("PKCE verifier, redirect URI or client id does not match")
                    self._send(400, {"error": "invalid_grant"})
                    return
                now = int(time.time())
                token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, **claims},
                                   idp.key, algorithm="RS256", headers={"kid": "k1"})
                self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": 600})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def settings(self) -> dict[str, str]:
        """The service's environment for this provider."""
        return {"QUELLE_OIDC_ISSUER": ISSUER, "QUELLE_OIDC_JWKS_URL": f"{self.base}/certs",
                "QUELLE_OIDC_AUDIENCE": AUDIENCE, "QUELLE_OIDC_CLIENT_ID": CLIENT_ID,
                "QUELLE_OIDC_AUTHORIZATION_URL": f"{self.base}/authorize",
                "QUELLE_OIDC_TOKEN_URL": f"{self.base}/token"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
