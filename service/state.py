"""What the running service holds: built once in the app's lifespan, reached by routes through `request`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from index.embedders.base import Embedder
from index.store import StoreReader
from service.answering import Answerer, AnswerService
from service.auth import KeyStore
from service.config import Settings
from service.errors import NotEnabled
from service.gate import Overloaded
from service.metrics import Metrics
from service.previews import Previews
from service.ratelimit import RateLimiter
from service.retrieval import Retriever

# Ingests one file through the ingestion pipeline (wired by the CLI, so `service` never imports `ingest`):
# returns {"status": "added"|"updated"|"unchanged"|"failed", "reason", "document_id", "chunks_written", "warnings"}
IngestFile = Callable[[Path, tuple[str, ...] | None], dict[str, Any]]  # (file, access list or None)


@dataclass
class Services:
    settings: Settings
    embedder: Embedder
    store: StoreReader
    retriever: Retriever
    answers: AnswerService
    metrics: Metrics
    ingest_file: IngestFile | None
    keys: KeyStore | None = None  # None: authentication is off
    limiter: RateLimiter | None = None
    oidc: Any = None  # service.oidc.OidcVerifier when OIDC is configured
    gate: Any = None  # service.gate.CpuGate bounding concurrent CPU work (see AnswerService.gate)
    answerers: dict[str, Answerer] = field(default_factory=dict)  # by the `mode` a request names
    previews: Previews = field(default_factory=Previews)
    jobs: Any = None  # service.hooks.SyncJobs when webhooks are on
    watcher: Any = None  # ingest/watch.py's Watcher when the service follows folders (--watch)
    slack: Any = None  # service.slack.SlackListener when the chat listener is on
    ready: bool = False
    _writes: Any = field(default_factory=threading.Lock, repr=False)  # the ingestion's own lock when there is one

    def answerer(self, mode: str, tools: Sequence[str] | None = None) -> Answerer:
        """The answerer of a request's `mode` ("single" unless it says otherwise), with only the `tools` it
        chose (agent mode)."""
        got = self.answerers.get(mode)
        if got is None:
            raise NotEnabled(f"mode {mode!r} is not enabled here: agent mode needs a language model "
                             "(QUELLE_LLM_MODEL) and QUELLE_AGENT left on")
        return got.only(tools) if tools is not None and hasattr(got, "only") else got

    @contextmanager
    def writing(self) -> Iterator[None]:
        """One index write (upload, delete, access-list change) at a time in this service: the others wait
        their turn, up to the queue timeout (then 503 with Retry-After), instead of a 409 from the writer lock,
        which is left for another process writing."""
        started = time.monotonic()
        if not self._writes.acquire(timeout=self.settings.queue_timeout):
            raise Overloaded(time.monotonic() - started, retry_after=5, what="its turn to write the index")
        try:
            yield
        finally:
            self._writes.release()


async def services(request: Request) -> Services:
    """A dependency (async: FastAPI runs a plain `def` dependency in its thread pool, a hop per request)."""
    return request.app.state.services  # type: ignore[no-any-return]
