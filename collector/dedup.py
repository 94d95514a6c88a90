"""Remembering recent messageIds, so a resent batch is not stored twice."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from journeykit.collector._gc import collect_young

__all__ = ["DedupWindow", "Deduplicator"]


class DedupWindow(Protocol):
    """What the ingest step needs of a dedup window: this process's, or one shared in Redis."""

    def reserve(self, ids: Iterable[str]) -> list[bool]: ...

    def commit(self, ids: Iterable[str]) -> None: ...

    def release(self, ids: Iterable[str]) -> None: ...

    def pending(self, ids: list[str]) -> list[str]:
        """Those of ``ids`` reserved by a request whose write has not settled yet."""
        ...

    def lost(self, ids: list[str]) -> list[str]:
        """Those of ``ids`` neither reserved nor remembered: their write failed or was dropped."""
        ...

    def close(self) -> None: ...


GENERATIONS = 8
"""Generations a full window is kept in: each holds a slice of the window's time and at most
this share of its entries (see :class:`Deduplicator`)."""


UNIONS = 2
"""Sets the ids are looked up in, each holding every ``UNIONS``-th generation's (see
:class:`Deduplicator`)."""


class _Generation:
    __slots__ = ("ids", "last", "started", "union")

    def __init__(self, now: float, union: set[str]) -> None:
        self.started = now
        self.last = now  # when an id was last added
        self.ids: set[str] = set()
        self.union = union  # the lookup set that holds these ids too
        # Old before it fills: young collections never walk its ids (see collect_young).
        collect_young()


class Deduplicator:
    """A time window of seen messageIds with a hard memory bound.

    ``reserve`` claims ids before a write and ``commit`` or ``release`` settles them after, so
    two concurrent requests carrying one id cannot both store it, and a write that failed does
    not make a later retry look like a duplicate.

    The ids are kept in generations, oldest first, each started when the previous one spans
    ``window / GENERATIONS`` seconds or holds ``max_entries / GENERATIONS`` ids. Kept in one
    ordered dict that evicted its oldest entry per new one, the window rebuilt its whole table
    whenever the deleted slots ran out: 70-90 ms with 500,000 ids, every few seconds at 45,000
    ids a second, with every request of the process waiting (the GIL is held throughout), which
    was the tail of the collector's latency. A generation only grows, so its rebuilds are the
    amortized doublings of an eighth of the ids, and forgetting is dropping the oldest one.

    Lookups go to ``UNIONS`` (two) sets, each of every other generation's ids, not to each
    generation: a new id cost a probe of all eight tables, each a likely cache miss, ~0.6 us
    per event on the event loop (a sixth of its CPU in a serving collector); two probes cost
    ~0.2 us. The unions do rebuild their tables as ids come and go (hash to slot, without
    touching the strings): one set of all 500,000 ids took up to 15 ms (20 ms in a server),
    each of two halves takes up to ~7 ms, once per ~160,000 new ids; four would cost half as
    much again per lookup for 6 ms (``bench/collector_dedup.py``; docs/benchmarks.md,
    "Session 12").

    So an id is remembered for ``window`` seconds at least and one generation's span (an eighth
    of the window) at most; at the memory bound the oldest generation is forgotten whole, and
    ``len()`` never exceeds ``max_entries`` (a batch larger than the bound keeps its last ids:
    it fills generations in order). An id committed again is added to the youngest generation,
    so it lives on.
    """

    def __init__(
        self, window: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window = window
        self._max = max_entries
        self._clock = clock
        self._span = window / GENERATIONS
        self._cap = -(-max_entries // GENERATIONS)  # ceiling: at least one id
        self._generations: deque[_Generation] = deque()
        # Every remembered id once, in the union of its generation (see the class docstring).
        # An id lives in exactly one generation (a commit again moves it to the youngest), so
        # forgetting a generation is taking its ids out of its union.
        self._unions: list[set[str]] = [set() for _ in range(UNIONS)]
        self._started = 0  # generations started so far: the next one's union is this modulo
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return sum(map(len, self._unions))

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
            unions, pending = self._unions, self._pending
            # The usual batch: distinct ids, none known. Set operations decide it in C.
            if (
                len(fresh) == len(ids)
                and fresh.isdisjoint(pending)
                and all(fresh.isdisjoint(union) for union in unions)
            ):
                pending |= fresh
                return [True] * len(ids)
            for mid in ids:
                if mid in pending or any(mid in union for union in unions):
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
        with self._lock:
            self._pending.difference_update(ids)
            generations, unions = self._generations, self._unions
            fresh = set(ids)
            if len(fresh) != len(ids) or not all(fresh.isdisjoint(u) for u in unions):
                # Some were remembered already (or came twice): moved to the youngest
                # generation, each id in one generation still.
                ids = list(dict.fromkeys(ids))
                for generation in generations:
                    generation.ids.difference_update(fresh)
                for union in unions:
                    union.difference_update(fresh)
            young = generations[-1] if generations else None
            if young is None or now - young.started >= self._span:
                young = self._start(now)
            # Generations of at most ``_cap`` ids however many come at once (the window is
            # refilled in one call at start), so the bound forgets an eighth at a time.
            done = 0
            while done < len(ids):
                room = self._cap - len(young.ids)
                if room <= 0:
                    young = self._start(now)
                    room = self._cap
                part = ids if done == 0 and len(ids) <= room else ids[done : done + room]
                young.ids.update(part)
                young.union.update(part)
                young.last = now
                done += len(part)
            while len(self) > self._max and len(generations) > 1:
                self._forget(generations.popleft())

    def _start(self, now: float) -> _Generation:
        generation = _Generation(now, self._unions[self._started % UNIONS])
        self._started += 1
        self._generations.append(generation)
        return generation

    @staticmethod
    def _forget(generation: _Generation) -> None:
        generation.union.difference_update(generation.ids)

    def release(self, ids: Iterable[str]) -> None:
        with self._lock:
            self._pending.difference_update(ids)

    def pending(self, ids: list[str]) -> list[str]:
        with self._lock:
            return [mid for mid in ids if mid in self._pending]

    def lost(self, ids: list[str]) -> list[str]:
        if self._window <= 0:
            return []
        with self._lock:
            self._expire(self._clock())
            unions, pending = self._unions, self._pending
            return [
                mid
                for mid in ids
                if mid not in pending and not any(mid in union for union in unions)
            ]

    def close(self) -> None:
        """Nothing to release: the window lives in this process's memory."""

    def _expire(self, now: float) -> None:
        # Once a generation's last addition is past the horizon, all of its ids are.
        horizon = now - self._window
        generations = self._generations
        while generations and generations[0].last <= horizon:
            self._forget(generations.popleft())
