"""Ingestion on Ray Data (`quelle ingest --ray [ADDRESS]`, `pip install -e ".[ray]"`).

The driver (this process) discovers the files, skips the unchanged ones and gives access lists exactly as
`Ingestor` does, and alone writes the store. The cluster does the heavy work:

    files ─▶ parse (Ray tasks, each file in the sandbox: ingest/sandbox.py)
          ─▶ chunk + embed (an actor pool: one model load per actor, a GPU each where the cluster has GPUs)
          ─▶ the driver puts whole documents into the store and commits (one generation) at batch boundaries

so readers never see part of a document or part of a batch. A killed worker is retried by Ray (its file is
parsed or embedded again); a killed driver leaves the generations it published, and the next run skips what
they hold, so nothing is duplicated. The driver reads a file only to tell an edit from a touch; the workers
read the files by path: on a cluster of several machines the files must be at the same path on each (a shared
or synchronised folder). Connecting to or starting the cluster: ingest/ray_cluster.py.

CPU budget: Ray schedules by declared CPUs, and an actor pool that takes every CPU starves the parse tasks
feeding it (the pipeline waits forever). `plan()` reserves a quarter of the CPUs (at least one) for parsing
and gives the rest to the embedding actors.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index.errors import ConfigError, ParseError
from index.records import ChunkRecord, document_id
from ingest.chunking import Chunker, ChunkingConfig
from ingest.discover import discover
from ingest.document import DocumentMeta, ParsedDocument
from ingest.pipeline import Ingestor, Progress, _Pending, _Prepared
from ingest.report import IngestReport
from ingest.sandbox import ParseLimits, ParserPool

log = logging.getLogger(__name__)

EmbedderFactory = Callable[..., Any]  # threads= -> an embedder with its tokenizer (picklable: it goes to actors)


PARSE_CPUS = 0.5  # two parse tasks a reserved CPU (they wait on their sandbox process); and never the actors'
# CPUs, or Ray Data fuses parsing into the embedding actors, where it would run one file at a time


@dataclass(frozen=True)
class RayPlan:
    """How the cluster's resources are split between the stages."""
    actors: int
    actor_cpus: float
    actor_gpus: float
    parse_cpus: float
    threads: int | None  # the embedder's threads in each actor
    batch_docs: int = 8  # documents per embedding call

    def describe(self) -> str:
        where = f"{self.actor_gpus:g} GPU" if self.actor_gpus else f"{self.actor_cpus:g} CPU"
        return (f"{self.actors} embedding actor(s) with {where} each"
                + (f" ({self.threads} threads)" if self.threads else "") + f"; parsing {self.parse_cpus:g} CPU a task")


def plan(cpus: float, gpus: float, *, actors: int | None = None, local_cores: int | None = None) -> RayPlan:
    """Split `cpus` logical CPUs (and `gpus`) of a cluster: GPUs present, one actor per GPU; else a quarter
    of the CPUs (at least one) for parse tasks and the rest for actors of two CPUs (one on a small machine).
    `local_cores`: the cluster is this machine; the actors' threads then share its cores between them (the
    parse tasks overlap with them, as in single-process ingestion)."""
    if cpus < 2:
        raise ConfigError(f"Ray ingestion needs at least 2 CPUs in the cluster (one to parse, one to embed); "
                          f"it has {cpus:g}")
    if gpus >= 1:
        n = actors or int(gpus)
        return RayPlan(n, 1, 1, PARSE_CPUS, None)
    reserve = max(1, int(cpus // 4))
    per = 1 if cpus - reserve < 4 else 2
    n = actors or max(1, int((cpus - reserve) // per))
    per = min(per, max(1, int((cpus - reserve) // n)))
    if n * per + 1 > cpus:
        raise ConfigError(f"{n} embedding actors of {per} CPU leave no CPU of the cluster's {cpus:g} to parse: "
                          f"set QUELLE_RAY_ACTORS to at most {int((cpus - 1) // per)}")
    threads = max(1, local_cores // n) if local_cores else per
    return RayPlan(n, per, 0, PARSE_CPUS, threads)


# --- the work shipped to the cluster -------------------------------------------------------------------------

@dataclass
class _Task:
    path: str
    source: str
    doc_id: str
    known: frozenset[str]  # text hashes the store already has vectors for (the previous version's chunks)


@dataclass
class _Parsed:
    task: _Task
    content_hash: str = ""
    parsed: ParsedDocument | None = None
    error: str = ""


@dataclass
class _Done:
    path: str
    content_hash: str = ""
    meta: DocumentMeta | None = None
    chunks: list[ChunkRecord] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # embedded here, by text hash
    embedded: int = 0  # chunks this document was the first in its batch to need
    tokens: int = 0
    error: str = ""


_POOL: ParserPool | None = None  # one sandbox per Ray worker process, reused by the tasks it runs


def _parse(row: dict[str, Any], limits: ParseLimits, max_bytes: int) -> dict[str, Any]:
    global _POOL
    task: _Task = pickle.loads(row["task"])
    out = _Parsed(task)
    path = Path(task.path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            out.error = f"the file is {size / 1e6:.0f} MB, over the limit of {max_bytes / 1e6:.0f} MB " \
                        "(QUELLE_MAX_FILE_MB)"
            return {"parsed": pickle.dumps(out)}
        data = path.read_bytes()
    except OSError as exc:
        out.error = f"cannot read on the worker: {exc.strerror or exc}"
        return {"parsed": pickle.dumps(out)}
    out.content_hash = hashlib.sha256(data).hexdigest()
    if _POOL is None:
        _POOL = ParserPool(1, limits)
        atexit.register(_POOL.close)
    _, outcome = next(_POOL.map([(path, data)]))
    if isinstance(outcome, ParseError):
        out.error = outcome.reason
    else:
        out.parsed = outcome
    return {"parsed": pickle.dumps(out)}


class _ChunkAndEmbed:
    """An actor of the pool: loads the model once, then chunks and embeds batches of parsed documents."""

    def __init__(self, make_embedder: EmbedderFactory, chunking: ChunkingConfig, threads: int | None) -> None:
        self.embedder = make_embedder(threads=threads)
        self.chunker = Chunker(self.embedder.tokenizer, chunking)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[bytes]]:
        done: list[_Done] = []
        todo: dict[str, ChunkRecord] = {}
        for raw in batch["parsed"]:
            item: _Parsed = pickle.loads(raw)
            d = _Done(item.task.path, item.content_hash, error=item.error)
            done.append(d)
            if item.parsed is None:
                continue
            try:
                d.chunks = self.chunker.chunk(item.parsed, item.task.source, item.task.doc_id)
            except Exception as exc:  # a chunking bug on a strange document must not stop the batch
                log.exception("unexpected error chunking %s", item.task.path)
                d.error = f"unexpected error ({type(exc).__name__}: {exc})"
                continue
            d.meta = item.parsed.meta()
            for c in d.chunks:
                if c.text_hash not in item.task.known and c.text_hash not in todo:
                    todo[c.text_hash] = c
                    d.embedded += 1
                    d.tokens += c.n_tokens
        vectors = dict(zip(todo, self.embedder.embed_passages([c.embed_text for c in todo.values()]),
                           strict=True)) if todo else {}
        for d in done:
            d.vectors = {c.text_hash: vectors[c.text_hash] for c in d.chunks if c.text_hash in vectors}
        return {"done": [pickle.dumps(d) for d in done]}


# --- the driver ----------------------------------------------------------------------------------------------

class RayIngestor(Ingestor):
    """`Ingestor` with parsing, chunking and embedding on a Ray cluster (connected with `ray_cluster`)."""

    def __init__(self, store: Any, embedder: Any, make_embedder: EmbedderFactory, chunking: ChunkingConfig,
                 *, plan: RayPlan, limits: ParseLimits | None = None, **kwargs: Any) -> None:
        super().__init__(store, embedder, Chunker(embedder.tokenizer, chunking), **kwargs)
        self.make_embedder = make_embedder
        self.chunking = chunking
        self.plan = plan
        self.limits = limits or ParseLimits()

    def run(self, paths: Sequence[Path], *, sync: bool = False, progress: Progress | None = None,
            removed: Sequence[Path] = ()) -> IngestReport:
        report = IngestReport()
        started = time.monotonic()
        skipped: list[Path] = []
        files = list(discover(paths, skipped))
        report.skip([str(p) for p in skipped])
        try:
            prepared: dict[str, _Prepared] = {}
            tasks = []
            for path in files:
                p = self._prepare(path, report, read=False)  # the worker reads (and hashes) the file itself
                if p is None:
                    continue
                p.data = b""
                doc_id = document_id(p.source)
                known = frozenset(c.text_hash for c in self.store.chunks_of(doc_id)) if p.is_update else frozenset()
                prepared[str(path)] = p
                tasks.append({"task": pickle.dumps(_Task(str(path), p.source, doc_id, known))})
            if progress:
                progress(report, report.finished, len(files))
            for batch in self._results(tasks):
                self._publish(batch, prepared, report)
                if progress:
                    progress(report, report.finished, len(files))
            self._end(report, paths if sync else (), removed)
        except BaseException:
            self.store.rollback()
            raise
        report.seconds = time.monotonic() - started
        return report

    def _results(self, tasks: list[dict[str, bytes]]) -> Iterator[list[_Done]]:
        if not tasks:
            return
        import ray.data

        p = self.plan
        ds: Any = ray.data.from_items(tasks, override_num_blocks=min(len(tasks), 200))
        ds = ds.map(_parse, fn_kwargs={"limits": self.limits, "max_bytes": self.max_file_bytes},
                    num_cpus=p.parse_cpus)
        make_embedder, chunking, threads = self.make_embedder, self.chunking, p.threads

        class ChunkAndEmbed(_ChunkAndEmbed):  # its arguments travel with the class, not as an object to keep
            def __init__(self) -> None:
                super().__init__(make_embedder, chunking, threads)

        ds = ds.map_batches(ChunkAndEmbed, batch_size=p.batch_docs, compute=ray.data.ActorPoolStrategy(size=p.actors),
                            num_cpus=p.actor_cpus, num_gpus=p.actor_gpus or None)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield [pickle.loads(raw) for raw in batch["done"]]

    def _publish(self, batch: list[_Done], prepared: dict[str, _Prepared], report: IngestReport) -> None:
        """Whole documents into the store; a commit when one is due (never inside a batch)."""
        vectors: dict[str, np.ndarray] = {}
        for d in batch:
            p = prepared.pop(d.path)
            if d.error or d.meta is None:
                report.fail(d.path, d.error or "no result from the worker")
                continue
            p.content_hash = d.content_hash  # of the bytes the worker parsed
            vectors.update(d.vectors)
            report.chunks_embedded += d.embedded
            report.tokens_embedded += d.tokens
            report.chunks_reused += len(d.chunks) - d.embedded
            report.warnings.extend(d.meta.warnings)
            self._pending.append(_Pending(self._record(p, d.meta), d.chunks, is_update=p.is_update))
        missing = {c.text_hash: c for q in self._pending for c in q.chunks if c.text_hash not in vectors}
        if missing:
            vectors.update(self.store.vectors_for(missing))
            left = [c for h, c in missing.items() if h not in vectors]
            if left:  # not expected: the previous version's vectors are in the store this driver holds
                log.warning("%d chunk vectors were not in the store: embedded on the driver", len(left))
                vectors.update(zip((c.text_hash for c in left),
                                   self.embedder.embed_passages([c.embed_text for c in left]), strict=True))
        self._write(vectors, report)
        self._commit_if_due(report)
