"""Parsing in worker processes, each file under a time and a memory limit.

A hostile or broken file (a decompression bomb, a reference loop, a page that never ends) must cost one
failure in the report, not the batch: each file is parsed in a separate process whose address space is capped
(RLIMIT_AS, `memory_mb`) and whose parse is interrupted after `timeout_s` (a timer signal inside the worker;
should C code not return, the parent kills the worker a few seconds later and starts a new one). A worker
that dies (out of memory, a crash in native code) is replaced and the file reported.

The workers also overlap parsing with embedding: while the main process embeds, up to `workers` files are
being parsed. Results come back in the order the files were given.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from index.errors import ParseError
from ingest.document import ParsedDocument

log = logging.getLogger(__name__)

GRACE_S = 5.0  # beyond the limit, before the parent kills a worker that did not answer


@dataclass(frozen=True)
class ParseLimits:
    timeout_s: float = 120.0
    memory_mb: int = 2048


class _Timeout(BaseException):  # not an Exception: a parser's own `except Exception` must not swallow it
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise _Timeout


def _worker(conn: Connection, limits: ParseLimits) -> None:  # pragma: no cover - runs in the child
    import resource

    from ingest.parsers import parse_outcome  # imported here: the parent may not need the parsers' dependencies

    limit = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        path, data = task
        result: tuple[str, Any]
        try:
            signal.setitimer(signal.ITIMER_REAL, limits.timeout_s)
            try:
                outcome = parse_outcome(Path(path), data)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            result = ("error", outcome.reason) if isinstance(outcome, ParseError) else ("ok", outcome)
        except _Timeout:
            result = ("error", f"parsing took longer than {limits.timeout_s:g} s (QUELLE_PARSE_TIMEOUT)")
        except MemoryError:
            result = ("error", f"parsing needs more than {limits.memory_mb} MB (QUELLE_PARSE_MEMORY_MB)")
        del data
        try:
            conn.send(result)
        except MemoryError:
            conn.send(("error", f"the parsed text needs more than {limits.memory_mb} MB"))


class _Worker:
    def __init__(self, ctx: Any, limits: ParseLimits) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, limits), daemon=True, name="quelle-parser")
        self.proc.start()
        child.close()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.conn.close()


class ParserPool:
    """`workers` parser processes (started on first use, replaced when they die or hang)."""

    def __init__(self, workers: int = 2, limits: ParseLimits | None = None) -> None:
        self.workers = max(1, workers)
        self.limits = limits or ParseLimits()
        self._ctx = mp.get_context("spawn")  # a clean interpreter: no inherited threads, models or locks
        self._idle: list[_Worker] = []
        self.restarts = 0

    def parse(self, path: Path, data: bytes) -> ParsedDocument:
        """Parse one file in a worker; ParseError when it fails or breaks a limit."""
        results = self.map([(path, data)])
        _, outcome = next(results)
        if isinstance(outcome, ParseError):
            raise outcome
        return outcome

    def map(self, tasks: Iterable[tuple[Path, bytes]]) -> Iterator[tuple[Path, ParsedDocument | ParseError]]:
        """Parse each (path, bytes); yields (path, document or ParseError) in the order given, with up to
        `workers` files being parsed while the caller works on the previous results."""
        pending: deque[tuple[Path, _Worker | ParseError, float]] = deque()
        it = iter(tasks)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < self.workers:
                    try:
                        path, data = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append((path, self._submit(path, data), time.monotonic()))
                    del data
                if not pending:
                    return
                path, worker, started = pending.popleft()
                yield path, self._result(path, worker, started)
        finally:
            for _, worker, _ in pending:  # the caller stopped early: these workers hold tasks nobody reads
                if isinstance(worker, _Worker):
                    worker.kill()

    def _submit(self, path: Path, data: bytes) -> _Worker | ParseError:
        for attempt in range(2):  # an idle worker may have died; a fresh one is tried once more
            worker = self._idle.pop() if self._idle and attempt == 0 else _Worker(self._ctx, self.limits)
            try:
                worker.conn.send((str(path), data))
                return worker
            except (OSError, ValueError) as exc:
                worker.kill()
                error = exc
        return ParseError(path, f"cannot start a parser process: {error}")

    def _result(self, path: Path, worker: _Worker | ParseError, started: float) -> ParsedDocument | ParseError:
        if isinstance(worker, ParseError):
            return worker
        deadline = started + self.limits.timeout_s + GRACE_S + 10.0  # + a spawned worker's start-up
        try:
            if worker.conn.poll(max(0.0, deadline - time.monotonic())):
                status, value = worker.conn.recv()
                self._idle.append(worker)
                return value if status == "ok" else ParseError(path, value)
            reason = f"parsing took longer than {self.limits.timeout_s:g} s (QUELLE_PARSE_TIMEOUT)"
        except (EOFError, OSError):
            worker.proc.join(timeout=5)
            code = worker.proc.exitcode
            if code is not None and code < 0:
                name = signal.Signals(-code).name
                reason = f"the parser process was killed by {name} (out of memory or a crash in native code)"
            else:
                reason = f"the parser process exited unexpectedly (code {code}); memory limit " \
                         f"{self.limits.memory_mb} MB (QUELLE_PARSE_MEMORY_MB)"
        worker.kill()
        self.restarts += 1
        log.warning("%s: %s; parser process replaced", path, reason)
        return ParseError(path, reason)

    def close(self) -> None:
        for worker in self._idle:
            worker.stop()
        self._idle.clear()

    def __enter__(self) -> ParserPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2)))
