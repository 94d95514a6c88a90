"""Per-write-key rate limits: a token bucket counting events, not requests.

A bucket holds up to ``capacity`` tokens and refills at ``rate`` tokens a second; a request
takes one token per event it carries. A request with more events than the bucket can ever hold
is let through when the bucket is full and leaves it in debt, so a large batch is slowed down
instead of refused forever. Limits are per process: with ``--workers N`` each worker has its
own buckets.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["TokenBucket", "retry_after_header"]


class TokenBucket:
    """A thread-safe token bucket; ``clock`` is injectable so tests need no sleeping."""

    def __init__(
        self, rate: float, capacity: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("rate must be positive and capacity at least 1")
        self._rate = rate
        self._capacity = capacity
        self._clock = clock
        self._tokens = float(capacity)
        self._updated = clock()
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def capacity(self) -> int:
        return self._capacity

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)  # a clock going back must not drain the bucket
        self._tokens = min(float(self._capacity), self._tokens + elapsed * self._rate)
        self._updated = now

    def retry_after(self, cost: int = 1) -> float:
        """Seconds until a request of ``cost`` events would be let through (0: now)."""
        need = min(max(cost, 0), self._capacity)
        with self._lock:
            self._refill()
            return max(0.0, (need - self._tokens) / self._rate)

    def acquire(self, cost: int) -> float:
        """Take ``cost`` tokens and return 0, or take nothing and return the seconds to wait."""
        need = min(max(cost, 0), self._capacity)
        with self._lock:
            self._refill()
            if self._tokens + 1e-9 < need:  # tolerance: float refill must not cost a whole retry
                return (need - self._tokens) / self._rate
            self._tokens -= max(cost, 0)
            return 0.0


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up and at least 1."""
    return str(max(1, math.ceil(seconds)))
