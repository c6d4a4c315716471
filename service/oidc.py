"""OpenID Connect / JWT bearer tokens: signature checked against the identity provider's JWKS, then issuer,
audience and expiry; the user and groups come from configurable claims.

Optional (`pip install -e ".[oidc]"`, PyJWT): turned on by QUELLE_OIDC_ISSUER and QUELLE_OIDC_JWKS_URL. API
keys keep working beside it: a bearer value starting `qk_` is an API key, anything else a token. Only
asymmetric algorithms are accepted, and a token's `alg` must fit its key's type, so a token signed with the
public key as an HMAC secret, or an RS256 token naming an EC key, is a 401.

The provider's keys (`KeySet`) are kept for 5 minutes and fetched again when a token names an unknown `kid`
(a rotated key), at most once per QUELLE_OIDC_REFETCH_SECONDS *whatever the outcome*: while the provider hangs
or fails, random kids cannot start one fetch each, the known keys keep working past their 5 minutes, and a
token that needs the provider gets a 503 at once. One fetch runs at a time; tokens are checked on a small
thread pool of their own (`OidcVerifier.executor`), so a hanging provider never holds the threads that API-key
requests run on.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from service.auth import AuthError, AuthUnavailable, Principal

log = logging.getLogger("quelle.oidc")

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC"}  # an algorithm's family -> the JWK key type it needs
MAX_JWKS_BYTES = 1 << 20


class KeySet:
    """The identity provider's signing keys by `kid` (see the module's text for when they are fetched)."""

    def __init__(self, url: str, *, timeout: float = 5, refetch_seconds: float = 30, lifespan: float = 300) -> None:
        import jwt

        self._jwt = jwt
        self.url, self.timeout, self.refetch, self.lifespan = url, timeout, refetch_seconds, lifespan
        self._keys: dict[str, Any] = {}  # kid -> jwt.PyJWK
        self._fetched = -math.inf  # when the keys were last fetched, successfully
        self._tried = -math.inf  # when a fetch last started, whatever came of it
        self._failure: str | None = None  # why the last fetch failed (None: it worked)
        self._lock = threading.Lock()  # one fetch at a time
        self.fetches = 0

    def key(self, kid: str | None) -> Any:
        """The key named `kid`: AuthError when the provider does not publish it, AuthUnavailable when the
        provider cannot be asked."""
        have = self._keys.get(kid or "")
        if have is not None and time.monotonic() - self._fetched < self.lifespan:
            return have
        if self._lock.acquire(timeout=self.timeout + 1):
            try:
                if time.monotonic() - self._tried >= self.refetch:
                    self._fetch()
            finally:
                self._lock.release()
        found = self._keys.get(kid or "")
        if found is not None:
            return found
        if self._failure is not None:
            raise AuthUnavailable(f"cannot fetch the identity provider's keys: {self._failure}")
        raise AuthError(f"invalid token: the identity provider publishes no key {kid!r}")

    def _fetch(self) -> None:
        self._tried = time.monotonic()
        self.fetches += 1
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as r:  # noqa: S310 (the configured URL)
                raw = r.read(MAX_JWKS_BYTES + 1)
        except urllib.error.HTTPError as exc:
            return self._failed(f"it answered HTTP {exc.code}")
        except (OSError, ValueError) as exc:  # unreachable, refused, timed out, a bad URL
            return self._failed(f"cannot reach it ({type(exc).__name__})")
        if len(raw) > MAX_JWKS_BYTES:
            return self._failed(f"its key set is over {MAX_JWKS_BYTES} bytes")
        try:
            data = json.loads(raw)
            keys = self._jwt.PyJWKSet.from_dict(data).keys if isinstance(data, dict) else None
        except (ValueError, self._jwt.PyJWTError):
            keys = None
        if keys is None:
            return self._failed("it answered something that is not a JSON Web Key Set")
        self._keys = {k.key_id: k for k in keys if k.key_id}
        self._fetched, self._failure = time.monotonic(), None

    def _failed(self, why: str) -> None:
        log.warning("cannot fetch the identity provider's keys from %s: %s (next try in %g s at the earliest; "
                    "known keys stay in use)", self.url, why, self.refetch)
        self._failure = why


class OidcVerifier:
    def __init__(self, issuer: str, jwks_url: str, audience: str | None = None, *, user_claim: str = "sub",
                 groups_claim: str = "groups", algorithms: Sequence[str] = ALGORITHMS, leeway: float = 30,
                 timeout: float = 5, refetch_seconds: float = 30, threads: int = 4) -> None:
        try:
            import jwt
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise AuthUnavailable("OIDC is configured but PyJWT is not installed: pip install -e '.[oidc]'") from exc
        self._jwt = jwt
        self.issuer, self.audience = issuer, audience
        self.user_claim, self.groups_claim = user_claim, groups_claim
        self.algorithms = list(algorithms)
        self.leeway = leeway
        self.keys = KeySet(jwks_url, timeout=timeout, refetch_seconds=refetch_seconds)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="oidc")

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def verify(self, token: str) -> Principal:
        jwt = self._jwt
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.algorithms:
            raise AuthError(f"invalid token: algorithm {alg!r} is not accepted (accepted: "
                            f"{', '.join(self.algorithms)})")
        if kid is not None and not isinstance(kid, str):
            raise AuthError("invalid token: 'kid' is not a string")
        key = self.keys.key(kid)
        if key.key_type != KEY_TYPES.get(str(alg)[:2]) or (key.key_type == "EC" and key.algorithm_name != alg):
            raise AuthError(f"invalid token: algorithm {alg} does not fit the provider's {key.key_type} key "
                            f"{kid!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=self.leeway, options={"require": ["exp", "iss", self.user_claim],
                                             "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except (jwt.PyJWTError, TypeError, ValueError) as exc:  # TypeError: a key PyJWT cannot use for alg
            raise AuthError(f"invalid token: {exc}") from None
        name = claims[self.user_claim]
        if not isinstance(name, str) or not name.strip():
            raise AuthError(f"invalid token: claim {self.user_claim!r} is not a name")
        raw = claims.get(self.groups_claim, [])
        if isinstance(raw, str):
            raw = raw.replace(",", " ").split()
        if not isinstance(raw, list) or not all(isinstance(g, str) for g in raw):
            raise AuthError(f"invalid token: claim {self.groups_claim!r} is not a list of group names")
        return Principal(name, frozenset(g for g in raw if g), key_id=f"oidc:{name}", realm="oidc")
