"""Per-key rate limiting: a token bucket per API key (requests per second, with a burst allowance).

In memory, per process: a deployment with several replicas divides the rate among them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from index.errors import QuelleError


class RateLimited(QuelleError):
    """Too many requests for one key (HTTP 429 with Retry-After)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limit exceeded: retry in {math.ceil(retry_after)} s")
        self.retry_after = retry_after


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Take one token for `key`, or raise RateLimited with the seconds until one is available."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise RateLimited((1.0 - tokens) / self.rate)
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:  # forget idle keys (their buckets are full again anyway)
                full = [k for k, (t, seen) in self._buckets.items() if t + (now - seen) * self.rate >= self.burst]
                for k in full:
                    del self._buckets[k]
