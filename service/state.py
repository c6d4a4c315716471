"""What the running service holds: built once in the app's lifespan, reached by routes through `request`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request

from index.embedder import Embedder
from index.faiss_store import FaissSqliteStore
from service.answering import AnswerService
from service.auth import KeyStore
from service.config import Settings
from service.metrics import Metrics
from service.ratelimit import RateLimiter
from service.retrieval import Retriever

# Ingests one file through the ingestion pipeline (wired by the CLI, so `service` never imports `ingest`):
# returns {"status": "added"|"updated"|"unchanged"|"failed", "reason", "document_id", "chunks_written", "warnings"}
IngestFile = Callable[[Path, tuple[str, ...] | None], dict[str, Any]]  # (file, access list or None)


@dataclass
class Services:
    settings: Settings
    embedder: Embedder
    store: FaissSqliteStore
    retriever: Retriever
    answers: AnswerService
    metrics: Metrics
    ingest_file: IngestFile | None
    keys: KeyStore | None = None  # None: authentication is off
    limiter: RateLimiter | None = None
    oidc: Any = None  # service.oidc.OidcVerifier when OIDC is configured
    gate: Any = None  # service.gate.CpuGate bounding concurrent CPU work (see AnswerService.gate)
    ready: bool = False


async def services(request: Request) -> Services:
    """A dependency (async: FastAPI runs a plain `def` dependency in its thread pool, a hop per request)."""
    return request.app.state.services  # type: ignore[no-any-return]
