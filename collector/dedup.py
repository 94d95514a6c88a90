"""Remembering recent messageIds, so a resent batch is not stored twice."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Protocol

__all__ = ["DedupWindow", "Deduplicator"]


class DedupWindow(Protocol):
    """What the ingest step needs of a dedup window: this process's, or one shared in Redis."""

    def reserve(self, ids: Iterable[str]) -> list[bool]: ...

    def commit(self, ids: Iterable[str]) -> None: ...

    def release(self, ids: Iterable[str]) -> None: ...

    def close(self) -> None: ...


class Deduplicator:
    """A time window of seen messageIds with a hard memory bound.

    ``reserve`` claims ids before a write and ``commit`` or ``release`` settles them after, so
    two concurrent requests carrying one id cannot both store it, and a write that failed does
    not make a later retry look like a duplicate.
    """

    def __init__(
        self, window: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window = window
        self._max = max_entries
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def reserve(self, ids: Iterable[str]) -> list[bool]:
        """For each id in order: ``True`` if it is new (and now reserved), ``False`` if seen."""
        if self._window <= 0:
            return [True for _ in ids]
        ids = ids if isinstance(ids, list) else list(ids)
        fresh = set(ids)
        now = self._clock()
        out: list[bool] = []
        with self._lock:
            self._expire(now)
            # The usual batch: distinct ids, none seen. Set operations decide it in C.
            if (
                len(fresh) == len(ids)
                and fresh.isdisjoint(self._pending)
                and self._seen.keys().isdisjoint(fresh)
            ):
                self._pending |= fresh
                return [True] * len(ids)
            for mid in ids:
                if mid in self._seen or mid in self._pending:
                    out.append(False)
                else:
                    self._pending.add(mid)
                    out.append(True)
        return out

    def commit(self, ids: Iterable[str]) -> None:
        if self._window <= 0:
            return
        ids = ids if isinstance(ids, list) else list(ids)
        now = self._clock()
        young = dict.fromkeys(ids, now)
        seen = self._seen
        with self._lock:
            self._pending.difference_update(young)
            if len(young) == len(ids) and seen.keys().isdisjoint(young):
                seen.update(young)  # the usual batch, in C: new ids, each once, in order
            else:  # an id twice, or committed again: each to the young end, in order
                for mid in ids:
                    seen[mid] = now
                    seen.move_to_end(mid)
            while len(seen) > self._max:
                seen.popitem(last=False)

    def release(self, ids: Iterable[str]) -> None:
        with self._lock:
            self._pending.difference_update(ids)

    def close(self) -> None:
        """Nothing to release: the window lives in this process's memory."""

    def _expire(self, now: float) -> None:
        horizon = now - self._window
        while self._seen:
            oldest, seen_at = next(iter(self._seen.items()))
            if seen_at > horizon:
                break
            del self._seen[oldest]
