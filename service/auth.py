"""API keys: who is asking, and which groups they belong to.

A key is `qk_<id>_<secret>`: the id finds the row, the secret (32 random bytes) is checked against its
SHA-256, compared in constant time. Only the hash is stored (keys.sqlite in the data folder, or a table beside a
PostgreSQL index); the full key is shown once, when it is created. A fast hash is enough: the secret is random,
not a password, so there is nothing to guess from the hash. Revoked keys stop working on the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from index.errors import QuelleError
from index.records import PUBLIC
from index.state import SqliteState, StateDb
from index.store import StoreConfig, open_state

PREFIX = "qk_"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    groups TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    revoked DOUBLE PRECISION
);
"""


class AuthError(QuelleError):
    """A missing, malformed, unknown or revoked key, or an invalid token (HTTP 401)."""


class AuthUnavailable(QuelleError):
    """The credentials cannot be checked now: the identity provider's keys are unreachable (HTTP 503)."""


@dataclass(frozen=True)
class Principal:
    """The caller: a user name and the groups whose documents they may read."""

    name: str
    groups: frozenset[str]
    key_id: str | None = None
    unrestricted: bool = False  # authentication is off: the local user reads and manages everything
    realm: str = "key"  # how the caller signed in: "key" (an API key) or "oidc" (a token)

    @property
    def owner(self) -> str:
        """Whose conversations these are: the realm and the name ('' for the local user), so an OIDC user and
        an API key of the same name never share one."""
        return "" if self.unrestricted else f"{self.realm}:{self.name}"

    def is_admin(self, admin_group: str) -> bool:
        """May read every document and upload, delete and re-label documents."""
        return self.unrestricted or admin_group in self.groups

    def access(self, admin_group: str) -> frozenset[str] | None:
        """The access-list entries that let this caller read a document; None: every document."""
        if self.is_admin(admin_group):
            return None
        return frozenset({PUBLIC, f"user:{self.name}", *(f"group:{g}" for g in self.groups)})


LOCAL = Principal("local", frozenset(), None, unrestricted=True)  # the caller when authentication is off


class ForbiddenError(QuelleError):
    """A known caller asking for something their groups do not allow (HTTP 403)."""


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    groups: tuple[str, ...]
    created: float
    revoked: float | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_groups(text: str) -> tuple[str, ...]:
    groups = tuple(sorted({g.strip() for g in text.split(",") if g.strip()}))
    for g in groups:
        if not all(ch.isalnum() or ch in "-_.:@" for ch in g):
            raise QuelleError(f"group {g!r}: use letters, digits and - _ . : @ only")
    return groups


class KeyStore:
    """API keys, in the table set "keys" of the index's backend (index/state.py): keys.sqlite in the data dir,
    or a table beside a PostgreSQL index, which every replica reads (a key revoked on one is refused by all
    from their next request)."""

    def __init__(self, db: StateDb | Path) -> None:
        self._db = SqliteState(db) if isinstance(db, Path) else db
        self._db.script(_SCHEMA)

    @classmethod
    def open(cls, where: StoreConfig) -> KeyStore:
        return cls(open_state(where, "keys"))

    def create(self, name: str, groups: tuple[str, ...] = ()) -> tuple[str, KeyInfo]:
        """A new key: (the key itself, shown only now; what is stored about it)."""
        name = name.strip()
        if not name:
            raise QuelleError("a key needs a --name")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        info = KeyInfo(key_id, name, tuple(groups), time.time(), None)
        self._db.rows("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                      (key_id, name, _hash(secret), ",".join(groups), info.created))
        return f"{PREFIX}{key_id}_{secret}", info

    def revoke(self, key_id_or_name: str) -> list[KeyInfo]:
        """Revoke a key by id, or every active key of a name; returns what was revoked."""
        now = time.time()
        with self._db.transaction("keys"):
            rows = self._db.rows("SELECT id FROM api_keys WHERE (id = ? OR name = ?) AND revoked IS NULL",
                                 (key_id_or_name, key_id_or_name))
            self._db.run_many("UPDATE api_keys SET revoked = ? WHERE id = ?", [(now, r[0]) for r in rows])
        return [k for k in self.list() if k.id in {r[0] for r in rows}]

    def list(self) -> list[KeyInfo]:
        rows = self._db.rows("SELECT id, name, groups, created, revoked FROM api_keys ORDER BY created")
        return [KeyInfo(r[0], r[1], tuple(g for g in r[2].split(",") if g), r[3], r[4]) for r in rows]

    def verify(self, key: str) -> Principal:
        if not key.startswith(PREFIX) or key.count("_") < 2:
            raise AuthError("malformed API key (expected qk_<id>_<secret>)")
        key_id, secret = key[len(PREFIX):].split("_", 1)
        found = self._db.rows("SELECT name, secret_sha256, groups, revoked FROM api_keys WHERE id = ?", (key_id,))
        row = found[0] if found else None
        if row is None or not hmac.compare_digest(row[1], _hash(secret)):
            raise AuthError("unknown API key")
        if row[3] is not None:
            raise AuthError("this API key was revoked")
        return Principal(row[0], frozenset(g for g in row[2].split(",") if g), key_id)

    def close(self) -> None:
        self._db.close()
