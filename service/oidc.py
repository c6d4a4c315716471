"""OpenID Connect / JWT bearer tokens: signature checked against the identity provider's JWKS, then issuer,
audience and expiry; the user and groups come from configurable claims.

Optional (`pip install -e ".[oidc]"`, PyJWT): turned on by QUELLE_OIDC_ISSUER and QUELLE_OIDC_JWKS_URL. API
keys keep working beside it: a bearer value starting `qk_` is an API key, anything else a token. Keys are
fetched once and cached (5 minutes); an unknown `kid` refetches them, at most once per
QUELLE_OIDC_REFETCH_SECONDS (so random kids cannot flood the provider), so a rotated key is picked up. Only asymmetric
algorithms are accepted, so a token signed with the public key as an HMAC secret is refused.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from service.auth import AuthError, AuthUnavailable, Principal

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")


class OidcVerifier:
    def __init__(self, issuer: str, jwks_url: str, audience: str | None = None, *, user_claim: str = "sub",
                 groups_claim: str = "groups", algorithms: Sequence[str] = ALGORITHMS, leeway: float = 30,
                 timeout: float = 5, refetch_seconds: float = 30) -> None:
        try:
            import jwt
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise AuthUnavailable("OIDC is configured but PyJWT is not installed: pip install -e '.[oidc]'") from exc
        self._jwt = jwt
        self.issuer, self.audience = issuer, audience
        self.user_claim, self.groups_claim = user_claim, groups_claim
        self.algorithms = list(algorithms)
        self.leeway = leeway
        extra: dict[str, Any] = {}
        if "cooldown_duration" in inspect.signature(jwt.PyJWKClient).parameters:  # PyJWT >= 2.11
            extra["cooldown_duration"] = refetch_seconds
        self._keys = jwt.PyJWKClient(jwks_url, cache_jwk_set=True, lifespan=300, timeout=timeout, **extra)

    def verify(self, token: str) -> Principal:
        jwt = self._jwt
        try:
            key = self._keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthUnavailable(f"cannot fetch the identity provider's keys: {exc}") from None
        except (jwt.PyJWKClientError, jwt.PyJWKError, jwt.DecodeError) as exc:
            raise AuthError(f"invalid token: {exc}") from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=self.algorithms, audience=self.audience, issuer=self.issuer,
                leeway=self.leeway, options={"require": ["exp", "iss", self.user_claim],
                                             "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        name = claims[self.user_claim]
        if not isinstance(name, str) or not name.strip():
            raise AuthError(f"invalid token: claim {self.user_claim!r} is not a name")
        raw = claims.get(self.groups_claim, [])
        if isinstance(raw, str):
            raw = raw.replace(",", " ").split()
        if not isinstance(raw, list) or not all(isinstance(g, str) for g in raw):
            raise AuthError(f"invalid token: claim {self.groups_claim!r} is not a list of group names")
        return Principal(name, frozenset(g for g in raw if g), key_id=f"oidc:{name}")
