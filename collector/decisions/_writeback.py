"""Write-behind: ``update`` queues events; a flush folds and writes them in one transaction.

The request path only checks each event's subject ids and appends it to a queue (well under a
microsecond per event). A flush, from the background thread every ``flush_interval_seconds``,
at once when ``flush_events`` are queued, or on ``flush()``/``close()``, folds every queued
event into profiles in one store transaction: one read and one write per subject however many
requests its events came in, and co-occurrence/popularity sums written every
``stats_flush_seconds``. Reads merge the process's own queue (see :meth:`WriteBehind.profiles`),
so this process's decisions reflect what it just ingested; other processes see it after the
flush. On a crash, at most the queue is lost: profiles are derived data that the NDJSON event
files can rebuild.

Suppressed subjects: an erasure suppresses a subject, then deletes its profile; another process
may still hold the subject's events in its queue. A flush asks ``suppressed`` (given by the
collector) which of its events' ids are suppressed, inside the store transaction, and leaves
those events out (counted, reason ``suppressed``), so a profile never comes back after an
erasure once this process sees the suppression.

Where a flush runs: when ``flush_events`` are queued, on the caller that queued the last of
them (the collector's event loop), not on the flush thread. A fold is pure Python: on another
thread it holds the GIL for whole switch intervals (5 ms), and every request thread and the
event loop then waits that long each time it wants the GIL back (after each fsync, each SQLite
query): measured at 450 requests/s with decisions on, handing full queues to the thread took
the wait for an inline decision from p99 16 to 114 ms, and at the 0.5 ms switch interval
``collector serve`` now sets, from 38-56 to 69-100 ms. On the caller the fold is one pause
instead, kept short by a small ``flush_events`` (1,000: ~4 ms).

Consistency between a read and a concurrent flush: ``_gen`` is odd from the end of a flush's
fold until its events leave the queue, the only time the store may hold them while the queue
still does. A read takes the queue snapshot and the store documents within one even generation
(else retries, or waits for that write), so a queued event is never counted twice nor missed.
While a flush folds (most of its time), reads go on: they see the documents as they were
before it, and the queue, which still holds its events. An erasure makes the generation odd
while it deletes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from journeykit.collector.decisions._flusher import Flusher
from journeykit.collector.decisions._overlay import Overlays
from journeykit.collector.decisions._pending import PendingEvents, PendingStats
from journeykit.collector.decisions._profile import order_lines, product_id
from journeykit.collector.decisions._settings import DecisionSettings
from journeykit.collector.decisions._store import (
    MAX_ALIAS_HOPS,
    Changes,
    Doc,
    ItemLists,
    ProfileStore,
    StoreUnavailable,
)
from journeykit.collector.decisions._timestamps import TimeParser
from journeykit.collector.decisions._traits import Currency
from journeykit.collector.decisions._update import UpdateCounts, build_changes, event_ids

__all__ = ["Health", "WriteBehind"]

log = logging.getLogger("journeykit.collector")

# Pending item-stat keys: written early past this (one Redis script of 20,000 increments stays
# far under the socket timeout), dropped and counted past 10x while the store is down.
STATS_MAX_KEYS = 20_000
MAX_HINTS = 1024  # groups whose linked ids and seeds are kept (per queue epoch)
FLUSH_TIMES_KEPT = 4096  # flush durations waiting for a metrics scrape

Hints = dict[str, None]
Suppressed = Callable[[Collection[str]], Collection[str]]
"""Given subject ids, those whose events must not be written (a suppression list)."""


class Health:
    """Whether the store is considered up, and the engine's counters."""

    def __init__(self, retry_seconds: float) -> None:
        self.retry_seconds = retry_seconds
        self.down_until = 0.0
        self.stats: Counter[str] = Counter()
        # Seconds each flush took (fold and write), until taken by a metrics scrape; the
        # latest FLUSH_TIMES_KEPT when nobody takes them.
        self.flush_seconds: deque[float] = deque(maxlen=FLUSH_TIMES_KEPT)

    def take_flush_seconds(self) -> list[float]:
        """The durations of the flushes since the last call, oldest first."""
        taken: list[float] = []
        with contextlib.suppress(IndexError):
            while True:
                taken.append(self.flush_seconds.popleft())
        return taken

    @property
    def available(self) -> bool:
        return time.monotonic() >= self.down_until

    def failed(self, exc: StoreUnavailable) -> None:
        if self.available:
            log.warning("journeykit decisions: profile store unavailable: %s", exc)
        self.down_until = time.monotonic() + self.retry_seconds
        self.stats["store_errors"] += 1


class WriteBehind:
    """The queue of one engine, its flushes, and reads that merge it (thread-safe)."""

    def __init__(
        self,
        store: ProfileStore,
        settings: DecisionSettings,
        money: Currency,
        clock: Callable[[], float],
        health: Health,
        suppressed: Suppressed | None = None,
    ) -> None:
        self.store = store
        self.suppressed = suppressed
        self.settings = settings
        self.money = money
        self.clock = clock
        self.health = health
        self._pid = os.getpid()
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()  # the queue and _gen
        self._flush_lock = threading.Lock()  # one flush (or erasure) at a time
        self._gen = 0
        self._events = PendingEvents()
        self._overlays = Overlays(self.money, self.settings.session_seconds)
        # Per group of linked queued ids: (positions seen, linked ids, seeds, categories, k)
        self._hints: dict[int, tuple[list[int], Hints, Hints, Hints, bool]] = {}
        self._hints_epoch = 0
        self._stats = PendingStats()
        # Flushes parse timestamps with one parser: its caches (an hour's start, a second)
        # outlive a flush. Used under _flush_lock only.
        self._times = TimeParser()
        self._oldest: float | None = None  # monotonic time of the oldest queued event
        self._flusher: Flusher | None = None

    def _check_fork(self) -> None:
        # A forked worker starts with an empty queue: the parent writes what it queued.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._reset()

    @property
    def queued(self) -> int:
        return len(self._events)

    def queue(self, events: Sequence[Mapping[str, Any]]) -> tuple[int, int, Counter[str]]:
        """``(queued, merges, skipped by reason)``; flushes at once when the queue is full."""
        self._check_fork()
        skipped: Counter[str] = Counter()
        with self._lock:
            room = self.settings.pending_limit - len(self._events)
            queued, merged = self._events.extend(events, room, skipped)
            if queued and self._oldest is None:
                self._oldest = time.monotonic()
            size = len(self._events)
        interval = self.settings.flush_interval_seconds
        if interval == 0 or size >= self.settings.flush_events:
            # Here, not on the flush thread: see "Where a flush runs" above.
            self.flush(stats=interval == 0)
        elif self._flusher is None and queued:
            with self._lock:
                if self._flusher is None:
                    self._flusher = Flusher(self, interval)
        return queued, merged, skipped

    def _stats_due(self, now: float) -> bool:
        since, every = self._stats.since, self.settings.stats_flush_seconds
        early = len(self._stats) >= self.store.stats_batch_limit
        return early or (since is not None and now - since >= every)

    def flush_due(self) -> None:
        """Flush when the oldest queued event or item statistic waited a full interval."""
        now = time.monotonic()
        oldest = self._oldest
        waited = oldest is not None and now - oldest >= self.settings.flush_interval_seconds
        if waited or self._stats_due(now):
            self.flush(stats=False)

    def flush(self, stats: bool = True) -> bool:
        """Write the queue (and item statistics: always when ``stats``, else when due).

        False when the store is unreachable: the queue is kept for the next attempt.
        """
        self._check_fork()
        with self._flush_lock:
            with self._lock:
                events = list(self._events.events)
                subjects = self._events.subjects(len(events))
                write_stats = stats or self.settings.stats_flush_seconds == 0
                write_stats = write_stats or self._stats_due(time.monotonic())
                if not events and not (write_stats and len(self._stats)):
                    return True
                if not self.health.available:
                    return False
            ok = writing = False

            def commit_next() -> None:
                # The fold is done; the store may change from now on (once per flush: a store
                # may run the fold again after a write conflict).
                nonlocal writing
                if not writing:
                    with self._lock:
                        self._gen += 1
                    writing = True

            started = time.perf_counter()
            try:
                ok = self._write(events, subjects, write_stats, commit_next)
            finally:
                self.health.flush_seconds.append(time.perf_counter() - started)
                with self._lock:
                    if ok:
                        self._events.drop_first(len(events))
                        self._oldest = time.monotonic() if len(self._events) else None
                    if writing:
                        self._gen += 1
        return ok

    def _write(
        self,
        events: list[Mapping[str, Any]],
        subjects: list[tuple[str | None, str | None]],
        write_stats: bool,
        commit_next: Callable[[], None],
    ) -> bool:
        counts = UpdateCounts()
        now = self.clock()
        folded = Changes()
        left_out = 0

        def compute(read: Callable[[Collection[str]], dict[str, Doc]]) -> Changes:
            nonlocal folded, left_out
            session = self.settings.session_seconds
            # Asked inside the transaction: an erasure that suppresses a subject and then
            # deletes its profile either is seen here or deletes after this write.
            todo, ids, left_out = _unsuppressed(events, subjects, self.suppressed)
            folded = build_changes(todo, read, self.money, now, session, counts, ids, self._times)
            changes = (
                self._stats.into(folded)
                if write_stats
                else Changes(docs=folded.docs, customers=folded.customers)
            )
            commit_next()
            return changes

        try:
            self.store.transact(compute)
        except StoreUnavailable as exc:
            self.health.failed(exc)
            self.health.stats["flush_errors"] += 1
            if len(self._stats) > 10 * STATS_MAX_KEYS:  # bounded while the store is down
                self.health.stats["item_stats_dropped"] += len(self._stats)
                self._stats.clear()
            return False
        if write_stats:
            self._stats.clear()
        else:
            self._stats.add(folded, time.monotonic())
        stats = self.health.stats
        stats["flushes"] += 1
        stats["events_applied"] += counts.applied
        stats["profiles_merged"] += counts.merged
        if counts.kept_apart:
            stats["merges_refused"] += counts.kept_apart
        if left_out:
            counts.skipped["suppressed"] += left_out
        for reason, n in counts.skipped.items():
            stats[f"events_skipped_{reason}"] += n
        return True

    def profiles(
        self, subjects: list[str], now: float, k: int = 0
    ) -> tuple[dict[str, Doc], ItemLists]:
        """Stored documents of ``subjects`` (aliases followed) with the queue folded in, and
        the item lists prefetched for ``k`` recommendations each (see ``candidates``)."""
        self._check_fork()
        for _ in range(3):
            with self._lock:
                gen = self._gen
                ids, hints = self._linked_ids(subjects, k)
            if gen % 2:  # a flush is writing: wait for it, then read again
                with self._flush_lock:
                    pass
                continue
            docs, lists = self._fetch(ids, hints, k)
            with self._lock:
                if self._gen == gen:
                    queue = self._queued_for(set(ids) | _targets(docs))
                    return self._merge(docs, queue, now), lists
        with self._flush_lock:  # no flush can start while we hold this
            with self._lock:
                ids, hints = self._linked_ids(subjects, k)
            docs, lists = self._fetch(ids, hints, k)
            with self._lock:
                queue = self._queued_for(set(docs) | set(subjects) | _targets(docs))
            return self._merge(docs, queue, now), lists

    def _queued_for(self, ids: set[str]) -> tuple[int, list[int], list[Mapping[str, Any]]]:
        """``(epoch, queue positions, events)`` of the queued events linked to ``ids``."""
        pending = self._events
        indexes = pending.indexes_for(ids)
        events = pending.events
        return pending.epoch, indexes, [events[i] for i in indexes]

    def _linked_ids(
        self, subjects: list[str], k: int
    ) -> tuple[list[str], tuple[dict[str, None], dict[str, None]]]:
        """The ids linked to ``subjects`` in the queue, and the queued events' products and
        categories (likely recommendation seeds, prefetched with the documents when ``k``).

        Called under ``_lock``. What the events give is kept per group of linked ids, like
        the overlays, and extended with the events queued since (a fresh dict each time: a
        caller may still be reading the last one).
        """
        pending = self._events
        indexes = pending.indexes_for(subjects)
        ids = dict.fromkeys(subjects)
        if not indexes:
            return list(ids), ({}, {})
        if pending.epoch != self._hints_epoch or len(self._hints) >= MAX_HINTS:
            self._hints_epoch = pending.epoch
            self._hints.clear()
        memo = self._hints.get(indexes[0])
        done = 0 if memo is None else len(memo[0])
        if memo is None or done > len(indexes) or memo[4] != bool(k) or indexes[:done] != memo[0]:
            memo, done = ([], {}, {}, {}, bool(k)), 0
        linked, seeds, cats = dict(memo[1]), dict(memo[2]), dict(memo[3])
        new = indexes[done:]
        linked.update(pending.linked_ids(new))
        events = pending.events
        for i in new if k else ():
            props = events[i].get("properties")
            if type(props) is dict:
                for item in [props, *(p for _, p in order_lines(props))]:
                    pid, cat = product_id(item), item.get("category")
                    if pid is not None:
                        seeds[pid] = None
                    if isinstance(cat, str) and cat:
                        cats[cat] = None
        self._hints[indexes[0]] = (indexes, linked, seeds, cats, bool(k))
        ids.update(linked)
        return list(ids), (seeds, cats)

    def _fetch(
        self, ids: list[str], hints: tuple[dict[str, None], dict[str, None]], k: int
    ) -> tuple[dict[str, Doc], ItemLists]:
        docs, lists = self.store.fetch_for_decisions(ids, list(hints[0]), list(hints[1]), k)
        for _ in range(MAX_ALIAS_HOPS):
            missing = _targets(docs) - set(docs)
            if not missing:
                break
            docs.update(self.store.fetch(missing))
        return docs, lists

    def _merge(
        self,
        docs: dict[str, Doc],
        queue: tuple[int, list[int], list[Mapping[str, Any]]],
        now: float,
    ) -> dict[str, Doc]:
        epoch, indexes, events = queue
        if not events:
            return docs
        return self._overlays.fold(epoch, indexes, events, docs, self.store.fetch, now)

    def forget(self, subjects: Collection[str]) -> int:
        """Drop the subjects' queued events and stored documents; how many subjects existed."""
        self._check_fork()
        wanted = set(subjects)
        with self._flush_lock:  # a flush in progress must not write them back afterwards
            with self._lock:
                queued = {i for e in self._events.events for i in event_ids(e) if i in wanted}
                self._events.forget(wanted)
                self._overlays.clear()  # no copy of an erased profile outlives the erasure
                self._gen += 1
            try:
                stored = set(self.store.fetch(list(wanted)))
                self.store.forget(list(wanted))
            finally:
                with self._lock:
                    self._gen += 1
        return len(stored | queued)

    def close(self) -> None:
        """Stop the background thread and write everything queued (counted if it cannot)."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.stop()
        self.health.down_until = 0.0  # one last attempt, whatever the retry schedule says
        if not self.flush(stats=True):
            lost = len(self._events)
            if lost:
                log.warning("journeykit decisions: %d queued events not written at close", lost)
                self.health.stats["events_dropped_store_unavailable"] += lost


def _unsuppressed(
    events: list[Mapping[str, Any]],
    subjects: list[tuple[str | None, str | None]],
    suppressed: Suppressed | None,
) -> tuple[list[Mapping[str, Any]], list[tuple[str | None, str | None]], int]:
    """``events`` and their ids without those naming a suppressed id; how many were left out."""
    if suppressed is None or not events:
        return events, subjects, 0
    ids = {i for pair in subjects for i in pair if i is not None}
    gone = suppressed(ids)
    if not gone:
        return events, subjects, 0
    gone = set(gone)
    kept = [
        (event, pair)
        for event, pair in zip(events, subjects, strict=True)
        if pair[0] not in gone and pair[1] not in gone
    ]
    return [e for e, _ in kept], [p for _, p in kept], len(events) - len(kept)


def _targets(docs: Mapping[str, Doc]) -> set[str]:
    return {d["alias"] for d in docs.values() if "alias" in d}
