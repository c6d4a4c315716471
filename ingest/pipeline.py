"""The ingestion pipeline: find files, skip the unchanged, parse, chunk, embed what is new, store, commit.

Files stream through: at most `embed_batch` chunks wait for embedding at any time, and a commit is made every
`commit_interval` seconds, so a killed run resumes where its last commit left off. A file that fails is
reported and skipped; a file that fails after a change keeps its previous version in the index.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.embedders.base import Embedder
from index.errors import ParseError
from index.records import ChunkRecord, DocumentRecord, document_id
from index.store import Store
from ingest.acl import AclPolicy
from ingest.chunking import Chunker
from ingest.discover import discover, source_of
from ingest.document import DocumentMeta, ParsedDocument
from ingest.parsers import parse_outcome
from ingest.report import IngestReport
from ingest.sandbox import ParserPool

log = logging.getLogger(__name__)

Progress = Callable[[IngestReport, int, int], None]  # (report so far, files done, files in all)


@dataclass
class _Prepared:
    source: str
    stat: os.stat_result
    content_hash: str
    acl: tuple[str, ...]
    is_update: bool
    data: bytes


@dataclass
class _Pending:
    doc: DocumentRecord
    chunks: list[ChunkRecord]
    is_update: bool


class Ingestor:
    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        chunker: Chunker,
        *,
        embed_batch: int = 256,
        commit_interval: float = 30.0,
        acl: AclPolicy | None = None,
        parser: ParserPool | None = None,
        max_file_bytes: int = 1 << 30,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunker = chunker
        self.embed_batch = embed_batch
        self.commit_interval = commit_interval
        self.acl = acl or AclPolicy()
        self.parser = parser  # None: parse in this process, without time or memory limits
        self.max_file_bytes = max_file_bytes
        self._pending: list[_Pending] = []
        self._last_commit = time.monotonic()

    def run(self, paths: Sequence[Path], *, sync: bool = False, progress: Progress | None = None,
            removed: Sequence[Path] = ()) -> IngestReport:
        """Ingest the files under `paths`; `sync`: then remove the documents under them whose files are gone;
        `removed`: paths (files or folders) known to be gone, whose documents are removed in the same run."""
        report = IngestReport()
        started = time.monotonic()
        skipped: list[Path] = []
        files = list(discover(paths, skipped))
        report.skip([str(p) for p in skipped])
        waiting: dict[Path, _Prepared] = {}

        def tasks() -> Iterator[tuple[Path, bytes]]:
            for path in files:
                prepared = self._prepare(path, report)
                if prepared is None:
                    if progress:
                        progress(report, report.finished, len(files))
                    continue
                waiting[path] = prepared
                data, prepared.data = prepared.data, b""
                yield path, data

        try:
            results = (self.parser.map(tasks()) if self.parser is not None  # else in this process, no limits
                       else ((path, parse_outcome(path, data)) for path, data in tasks()))
            for path, outcome in results:
                self._accept(path, waiting.pop(path), outcome, report)
                if sum(len(p.chunks) for p in self._pending) >= self.embed_batch:
                    self._flush(report)
                if progress:  # files finished (embedded and written, unchanged or failed): parsing runs ahead
                    progress(report, report.finished, len(files))
            self._flush(report)
            if progress:
                progress(report, len(files), len(files))
            self._end(report, paths if sync else (), removed)
        except BaseException:
            self.store.rollback()
            raise
        report.seconds = time.monotonic() - started
        return report

    def _end(self, report: IngestReport, synced: Sequence[Path], removed: Sequence[Path]) -> None:
        """Remove the documents whose files are gone under `synced` and `removed`, then commit."""
        for roots in (synced, removed):
            if roots:
                self._sync(roots, report)
        report.generation = self.store.commit()

    def _prepare(self, path: Path, report: IngestReport, *, read: bool = True) -> _Prepared | None:
        """Stat, skip the unchanged, read: what parsing needs (None: nothing to parse). `read` False: a new
        file is not read here (whoever parses it reads and hashes it); a changed one still is, to tell a touched
        file from an edited one."""
        source = source_of(path)
        try:
            st = path.stat()
            old = self.store.document_by_source(source)
            acl, authoritative = self.acl.for_source(source)
            if old and not authoritative:
                acl = old.acl  # keep a list set earlier (by a rule, --acl or the API)
            if old and old.size == st.st_size and old.mtime_ns == st.st_mtime_ns:
                self._unchanged(old, acl, report)
                return None
            if st.st_size > self.max_file_bytes:
                report.fail(str(path), f"the file is {st.st_size / 1e6:.0f} MB, over the limit of "
                                       f"{self.max_file_bytes / 1e6:.0f} MB (QUELLE_MAX_FILE_MB)")
                return None
            if old is None and not read:
                return _Prepared(source, st, "", acl, False, b"")
            data = path.read_bytes()
        except OSError as exc:
            report.fail(str(path), f"cannot read: {exc.strerror or exc}")
            return None
        content_hash = hashlib.sha256(data).hexdigest()
        if old and old.content_hash == content_hash:
            self._unchanged(old, acl, report)
            return None
        return _Prepared(source, st, content_hash, acl, old is not None, data)

    def _accept(self, path: Path, p: _Prepared, outcome: ParsedDocument | ParseError, report: IngestReport) -> None:
        if isinstance(outcome, ParseError):
            report.fail(str(path), outcome.reason)
            return
        doc = self._record(p, outcome)
        try:
            chunks = self.chunker.chunk(outcome, p.source, doc.id)
        except Exception as exc:  # a chunking bug on a strange document must not stop the batch
            log.exception("unexpected error chunking %s", path)
            report.fail(str(path), f"unexpected error ({type(exc).__name__}: {exc})")
            return
        report.warnings.extend(outcome.warnings)
        self._pending.append(_Pending(doc, chunks, is_update=p.is_update))

    @staticmethod
    def _record(p: _Prepared, parsed: ParsedDocument | DocumentMeta) -> DocumentRecord:
        return DocumentRecord(
            id=document_id(p.source), source=p.source, title=parsed.title, kind=parsed.kind,
            content_hash=p.content_hash, size=p.stat.st_size, mtime_ns=p.stat.st_mtime_ns, pages=parsed.pages,
            warnings=tuple(parsed.warnings), acl=p.acl,
        )

    def _unchanged(self, old: DocumentRecord, acl: tuple[str, ...], report: IngestReport) -> None:
        report.unchanged += 1
        if acl != old.acl and self.store.set_acl(old.id, acl):
            report.relabelled += 1

    def _flush(self, report: IngestReport) -> None:
        if not self._pending:
            return
        chunks = [c for p in self._pending for c in p.chunks]
        vectors = self.store.vectors_for(c.text_hash for c in chunks)
        todo: dict[str, ChunkRecord] = {}
        for c in chunks:
            if c.text_hash not in vectors:
                todo.setdefault(c.text_hash, c)
        if todo:
            fresh = self.embedder.embed_passages([c.embed_text for c in todo.values()])
            vectors.update(zip(todo.keys(), fresh, strict=True))
        report.chunks_embedded += len(todo)
        report.tokens_embedded += sum(c.n_tokens for c in todo.values())
        report.chunks_reused += len(chunks) - len(todo)
        self._write(vectors, report)
        self._commit_if_due(report)

    def _write(self, vectors: dict[str, np.ndarray], report: IngestReport) -> None:
        """Put the pending documents into the store, each chunk with its vector from `vectors` (by text hash)."""
        for p in self._pending:
            vecs = (np.stack([vectors[c.text_hash] for c in p.chunks]) if p.chunks
                    else np.zeros((0, self.embedder.dim), dtype=np.float32))
            self.store.put(p.doc, p.chunks, vecs)
            report.chunks_written += len(p.chunks)
            if p.is_update:
                report.updated += 1
            else:
                report.added += 1
        self._pending.clear()

    def _commit_if_due(self, report: IngestReport) -> None:
        """A commit (whole documents only: called between batches) when `commit_interval` has passed."""
        if time.monotonic() - self._last_commit >= self.commit_interval:
            report.generation = self.store.commit()
            self._last_commit = time.monotonic()

    def _sync(self, roots: Iterable[Path], report: IngestReport) -> None:
        """Remove documents under the given roots whose files are gone."""
        prefixes = []
        for root in roots:
            src = source_of(root)
            prefixes.append((src, src.rstrip("/") + "/"))
        for source in self.store.sources():
            under_a_root = any(source == exact or source.startswith(under) for exact, under in prefixes)
            if under_a_root and not os.path.exists(source):
                doc = self.store.document_by_source(source)
                if doc and self.store.delete(doc.id):
                    report.removed += 1
