"""The service's errors (children of index.errors.QuelleError), mapped to HTTP statuses in service/app.py.

    QuelleError
    └── ServiceError
        ├── LLMUnavailableError   the language model could not be reached or failed (503)
        ├── NotFoundError         an unknown document or session (404)
        ├── NotEnabled            a mode or tool this service does not offer (403)
        ├── ChatRequestError      an OpenAI-style request with no question in it (400)
        └── IngestUnavailable     this service was started without an ingestion pipeline (501)
"""

from __future__ import annotations

from typing import Any

from index.errors import QuelleError


class ServiceError(QuelleError):
    pass


class LLMUnavailableError(ServiceError):
    """`reason` is what a caller is told (what failed, never where: no URL, no error body); `detail` is for
    the log (the model's address and what it answered)."""

    def __init__(self, reason: str, sources: list[dict[str, Any]] | None = None, *, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or reason
        self.sources = sources or []


class NotFoundError(ServiceError):
    pass


class NotEnabled(ServiceError):
    pass


class ChatRequestError(ServiceError):
    pass


class IngestUnavailable(ServiceError):
    pass
