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


UNION_IDS = 62_500
"""The ids of the bound per lookup set (see :class:`Deduplicator`): a set rebuilds its table now
and then, a pause that grows with its ids; at most a generation's of the default window."""

TAG_SLOTS_PER_ID = 16
"""Slots of the tag table per id of the bound (see :class:`Deduplicator`): a new id's slot was
taken by a remembered one about once in sixteen, and only then is it looked up in the
generations."""

_MOST_TAG_SLOTS = 1 << 24  # a byte each: 16 MB, for bounds over a million ids

_NO_UNIONS = 0
"""``lookup_sets`` meaning: lookups go to the generations themselves."""
_MOST_UNIONS = 2  # beyond: the generations (see Deduplicator)


class _Generation:
    __slots__ = ("ids", "last", "started", "tag", "union")

    def __init__(self, now: float, union: set[str] | None, tag: int) -> None:
        self.tag = tag  # what its ids' slots of the tag table hold (see Deduplicator)
        self.started = now
        self.last = now  # when an id was last added
        self.ids: set[str] = set()
        self.union = union  # the lookup set that holds these ids too; None: ``ids`` is one
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

    So an id is remembered for ``window`` seconds at least and one generation's span (an eighth
    of the window) at most; at the memory bound the oldest generation is forgotten whole, and
    ``len()`` never exceeds ``max_entries`` (a batch larger than the bound keeps its last ids:
    it fills generations in order). An id committed again is added to the youngest generation,
    so it lives on.

    A new id is looked up in each generation (after the tag table below): eight probes, each a
    likely cache miss. Small windows (up to two ``UNION_IDS``) also keep each generation's ids
    in one of one or two lookup sets (``lookup_sets``), so that an id costs one or two probes.
    But the sets rebuild their tables as ids come and go (hash to slot, without touching the
    strings), and forgetting a generation deletes its ids from its set: alone in a process, one
    set of 500,000 ids paused up to 15 ms and each of two halves up to 7-9 ms, once per ~150,000
    new ids (``bench/collector_dedup.py``; docs/benchmarks.md, "Session 12"); in a serving
    collector under load, a 250,000-id set's rebuild took 17-28 ms of the writer thread, with
    the GIL held and the event loop waiting, about once a second at 50,000 events a second: the
    tail of the latency at 80% of the maximum rate, while the eight probes cost no more CPU per
    event there (1.01x, 1.00x; docs/benchmarks.md, "Session 14"). So sets are kept only while
    each holds at most a generation's share of the default window; the default 500,000 ids are
    probed in their generations, whose pauses stay an eighth of the bound's (up to 6-7 ms in
    that server).

    Eight probes per id, each a likely cache miss, were a sixth of the event loop's CPU in a
    serving collector. So without lookup sets a tag table narrows them first: a byte per
    slot, ``TAG_SLOTS_PER_ID`` slots per id of the bound, and each committed id writes its
    generation's tag (1 to 255, in turn) into the slot its hash picks. A slot thus holds the
    tag of the youngest generation that wrote it, and forgetting is oldest first, so an id
    still remembered sits in a slot whose tag is a live generation's. An id whose slot holds
    no live tag is new, with one probe; only the others (about one in sixteen at the bound,
    whose slot another id took, or a tag reused after 255 generations) are probed in the
    generations. The table is never cleared and never rebuilt: forgetting a generation only
    makes its tag dead. Writing the tags costs the commit ~9 us per 100 ids on the writer
    thread; in a serving collector the lookups took 15-18% of the event loop's CPU before and
    ~8% after, 7% less CPU per small event and 2% per rich one (docs/benchmarks.md, "Session
    15").
    """

    def __init__(
        self,
        window: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        lookup_sets: int | None = None,
    ) -> None:
        self._window = window
        self._max = max_entries
        self._clock = clock
        self._span = window / GENERATIONS
        self._cap = -(-max_entries // GENERATIONS)  # ceiling: at least one id
        self._generations: deque[_Generation] = deque()
        # With unions (see the class docstring), every remembered id is in its generation's
        # union, and in exactly one generation (a commit again moves it to the youngest), so
        # forgetting a generation is taking its ids out of its union.
        if lookup_sets is None:
            lookup_sets = -(-max_entries // UNION_IDS)
            if lookup_sets > _MOST_UNIONS:
                lookup_sets = _NO_UNIONS
        if lookup_sets < 0:
            raise ValueError("lookup_sets must be 0 (the generations) or more")
        self._unions = [set[str]() for _ in range(lookup_sets)] if lookup_sets else None
        collect_young()  # the unions old while empty: young collections never walk their ids
        self._started = 0  # generations started so far: the next one's union is this modulo
        slots = max(64, min(_MOST_TAG_SLOTS, TAG_SLOTS_PER_ID * max_entries))
        self._mask = (1 << (slots - 1).bit_length()) - 1  # a power of two, less one
        self._tags = bytearray(self._mask + 1) if self._unions is None else None
        self._live = [0] * 256  # generations alive per tag (two only after 255 generations)
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return self._size()

    def _size(self) -> int:
        return sum(map(len, self._lookup()))

    @property
    def lookup_sets(self) -> int:
        """How many sets of several generations a new id is looked up in (see the class
        docstring); 0: it is looked up in each generation."""
        return 0 if self._unions is None else len(self._unions)

    def _lookup(self) -> list[set[str]]:
        if self._unions is None:
            return [generation.ids for generation in self._generations]
        return self._unions

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
            unions, pending = self._lookup(), self._pending
            # The usual batch: distinct ids, none known.
            if len(fresh) == len(ids) and fresh.isdisjoint(pending) and self._new(fresh, unions):
                pending |= fresh
                return [True] * len(ids)
            for mid in ids:
                if mid in pending or any(mid in union for union in unions):
                    out.append(False)
                else:
                    self._pending.add(mid)
                    out.append(True)
        return out

    def _new(self, fresh: set[str], lookup: list[set[str]]) -> bool:
        """Whether none of ``fresh`` is remembered (``lookup``: the sets to look in)."""
        tags = self._tags
        if tags is not None:  # only the ids whose slot holds a live tag can be remembered
            mask, live = self._mask, self._live
            fresh = {mid for mid in fresh if live[tags[hash(mid) & mask]]}
        return all(fresh.isdisjoint(ids) for ids in lookup)

    def commit(self, ids: Iterable[str]) -> None:
        if self._window <= 0:
            return
        ids = ids if isinstance(ids, list) else list(ids)
        now = self._clock()
        with self._lock:
            self._pending.difference_update(ids)
            generations, unions = self._generations, self._unions
            if unions is not None:
                fresh = set(ids)
                if len(fresh) != len(ids) or not all(fresh.isdisjoint(u) for u in unions):
                    # Some were remembered already (or came twice): moved to the youngest
                    # generation, so that each id is in one generation and one union, and
                    # forgetting its older generation does not take it out of the union.
                    # (Without unions an id may sit in two generations: the younger keeps it.)
                    ids = list(dict.fromkeys(reversed(ids)))[::-1]  # each at its last place
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
                if young.union is not None:
                    young.union.update(part)
                tags = self._tags
                if tags is not None:
                    mask, tag = self._mask, young.tag
                    for mid in part:
                        tags[hash(mid) & mask] = tag
                young.last = now
                done += len(part)
            while self._size() > self._max and len(generations) > 1:
                self._forget(generations.popleft())

    def _start(self, now: float) -> _Generation:
        unions = self._unions
        union = None if unions is None else unions[self._started % len(unions)]
        tag = self._started % 255 + 1  # 0: a slot no id wrote
        generation = _Generation(now, union, tag)
        self._live[tag] += 1
        self._started += 1
        self._generations.append(generation)
        return generation

    def _forget(self, generation: _Generation) -> None:
        self._live[generation.tag] -= 1
        if generation.union is not None:
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
            unions, pending = self._lookup(), self._pending
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
