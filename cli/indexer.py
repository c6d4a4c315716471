"""Ingestion for the running service and the watcher: uploads (one file) and changes (paths changed and
deleted, from `quelle watch`, `--watch` or a webhook) through the same pipeline as `quelle ingest`.

The CLI wires this into `create_app`, so `service` never imports `ingest`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from index.embedders.base import Embedder, Tokenizer
from index.store import StoreConfig, open_store
from ingest.acl import AclPolicy
from ingest.chunking import Chunker, ChunkingConfig
from ingest.pipeline import Ingestor
from ingest.report import IngestReport
from ingest.sandbox import ParserPool
from ingest.watch import Watcher


class FileIngestor:
    def __init__(self, where: StoreConfig | Path, embedder: Embedder, tokenizer: Tokenizer, chunking: ChunkingConfig,
                 acl: AclPolicy | None = None, parser: ParserPool | None = None,
                 commit_interval: float = 30.0, settle: float = 1.0, polling: bool | None = None) -> None:
        self.where = where if isinstance(where, StoreConfig) else StoreConfig(where)
        self.parser = parser  # uploads are parsed under the same limits as `quelle ingest`
        self.acl = acl or AclPolicy()
        self.embedder = embedder
        self.chunker = Chunker(tokenizer, chunking)
        self.commit_interval = commit_interval
        self.settle = settle
        self.polling = polling
        # one write at a time in this process (uploads, the watcher, webhook jobs, and the service's own writes,
        # which take it too: Services.writing); other processes' writers: IndexLockedError
        self.lock = threading.RLock()

    def __call__(self, path: Path, acl: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Ingest one file; `acl` (checked) overrides the settings' rules for it."""
        policy = self.acl if acl is None else AclPolicy(self.acl.default, self.acl.rules, acl)
        with self.lock, open_store(self.where, model_id=self.embedder.model_id, dim=self.embedder.dim,
                                    writable=True) as store:
            report = Ingestor(store, self.embedder, self.chunker, commit_interval=float("inf"),
                              acl=policy, parser=self.parser).run([path])
            doc = store.document_by_source(path.resolve().as_posix())
        if report.failed:
            return {"status": "failed", "reason": report.failures[0].reason}
        status = "added" if report.added else "updated" if report.updated else "unchanged"
        return {"status": status, "document_id": doc.id if doc else None, "chunks_written": report.chunks_written,
                "warnings": report.warnings}

    def apply(self, changed: Sequence[Path], deleted: Sequence[Path]) -> IngestReport:
        """Ingest what changed under `changed` (files or folders: the unchanged are skipped) and remove the
        documents of the `deleted` paths (files or folders), in one run: a commit every `commit_interval`
        seconds and one at the end. Raises IndexLockedError while another process writes the index."""
        with self.lock, open_store(self.where, model_id=self.embedder.model_id, dim=self.embedder.dim,
                                    writable=True) as store:
            return Ingestor(store, self.embedder, self.chunker, commit_interval=self.commit_interval, acl=self.acl,
                            parser=self.parser).run(list(changed), removed=list(deleted))

    def pull(self, checkout: Path) -> tuple[list[Path], list[Path], str, str]:
        from ingest.git import pull

        return pull(checkout)

    def watcher(self, roots: Sequence[Path], observer: Any) -> Watcher:
        return Watcher(roots, self.apply, settle=self.settle, polling=self.polling, observer=observer)
