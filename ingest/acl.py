"""Which access list a document gets when it is ingested.

In order: the run's own list (`quelle ingest --acl ...`), the first settings rule whose pattern matches the
document's source path (shell-style, `*` also crosses folders: `*/hr/*`), else the default list. A list from
`--acl` or a rule is authoritative: it is applied to documents already in the index too, changed or not, so
editing a rule and re-running the ingestion re-labels its files without re-embedding them. The default list
only labels new documents; it never undoes a list set through the API.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from index.records import PUBLIC, check_acl


@dataclass(frozen=True)
class AclPolicy:
    default: tuple[str, ...] = (PUBLIC,)
    rules: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (pattern, access list), first match wins
    override: tuple[str, ...] | None = None

    @classmethod
    def build(cls, default: Iterable[str] = (PUBLIC,), rules: Iterable[tuple[str, Iterable[str]]] = (),
              override: Iterable[str] | None = None) -> AclPolicy:
        """A checked policy; ValueError names the bad entry or pattern."""
        checked = []
        for pattern, acl in rules:
            if not pattern.strip():
                raise ValueError("an access rule needs a non-empty path pattern")
            try:
                checked.append((pattern, check_acl(list(acl))))
            except ValueError as exc:
                raise ValueError(f"access rule {pattern!r}: {exc}") from None
        return cls(check_acl(list(default)), tuple(checked),
                   check_acl(list(override)) if override is not None else None)

    def for_source(self, source: str) -> tuple[tuple[str, ...], bool]:
        """The access list for a document, and whether it is authoritative (from --acl or a rule)."""
        if self.override is not None:
            return self.override, True
        for pattern, acl in self.rules:
            if fnmatch.fnmatchcase(source, pattern):
                return acl, True
        return self.default, False


def parse_acl(text: str) -> tuple[str, ...]:
    """`group:hr,user:bob` -> a checked access list (ValueError names the bad entry)."""
    return check_acl([e for e in text.split(",") if e.strip()])
