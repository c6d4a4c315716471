"""Quelle's errors, in one tree.

    QuelleError
    ├── ParseError            a file could not be read as a document (names the file and the reason)
    │   ├── EncryptedError    the file needs a password
    │   └── NoTextError       the file holds no usable text
    ├── IndexMismatchError    an index built with another embedding model or dimension
    ├── IndexCorruptError     the stored generation is inconsistent (should never happen: report it)
    ├── IndexLockedError      another process is writing the index
    ├── IndexWriteError       a commit failed (disk full, I/O error): the previous generation is intact
    └── ConfigError           a setting is invalid

The CLI turns these into one line and a non-zero exit; the service maps them to HTTP statuses.
"""

from __future__ import annotations


class QuelleError(Exception):
    """Base class of every error Quelle raises on purpose."""


class ParseError(QuelleError):
    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class EncryptedError(ParseError):
    pass


class NoTextError(ParseError):
    pass


class IndexMismatchError(QuelleError):
    pass


class IndexCorruptError(QuelleError):
    pass


class IndexLockedError(QuelleError):
    pass


class IndexWriteError(QuelleError):
    pass


class ConfigError(QuelleError):
    pass
