"""The CPU gate: at most `slots` requests embed or score at once, the others wait in arrival order.

Under load a 2-core box that lets 256 requests embed at once finishes none of them in time; the gate makes
them queue instead, so each admitted request runs at full speed. It is first come, first served (a request
that waited longest goes next, unlike a bare semaphore), re-entrant within a thread (a request that holds it
for a whole extractive answer passes its inner steps straight through), and bounded: a request that waits
longer than `max_wait` seconds is refused with `Overloaded` (503 with Retry-After) instead of running after
its client has given up.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from types import TracebackType

from service.errors import ServiceError


class Overloaded(ServiceError):
    def __init__(self, waited: float, retry_after: int, what: str = "a CPU slot") -> None:
        super().__init__(f"the service is busy: waited {waited:.0f} s for {what}")
        self.retry_after = retry_after


class CpuGate:
    def __init__(self, slots: int, *, max_wait: float | None = None) -> None:
        if slots < 1:
            raise ValueError(f"a gate needs at least one slot, not {slots}")
        self.slots = slots
        self.max_wait = max_wait
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._busy = 0
        self._local = threading.local()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> int:
        return self._busy

    def __enter__(self) -> CpuGate:
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            return self
        started = time.monotonic()
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            while self._queue[0] is not ticket or self._busy >= self.slots:
                left = None if self.max_wait is None else self.max_wait - (time.monotonic() - started)
                if left is not None and left <= 0:
                    self._queue.remove(ticket)
                    self._cond.notify_all()  # the one behind may now be first
                    raise Overloaded(time.monotonic() - started, max(1, round(self.max_wait or 1)))
                self._cond.wait(left)
            self._queue.popleft()
            self._busy += 1
            self._cond.notify_all()  # the next in line may take another free slot
        self._local.depth = 1
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._local.depth -= 1
        if self._local.depth == 0:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()
