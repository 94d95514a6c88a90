"""When to spool and when to try the collector again: shared by the thread and asyncio clients.

With a spool, a batch whose retries run out (``spool_after`` seconds at most, or
``max_retries``) or that shutdown interrupts is written to disk instead of dropped, and the
client enters *outage*: new batches go straight to the spool (so memory never fills up while
the collector is away) and the oldest record is sent once per backoff wait (full jitter,
capped at ``max_backoff``, at least 50 ms, or the server's ``Retry-After``). The first record
that gets through ends the outage, and records are replayed oldest first before anything newer
is sent, so events keep their order. Refusals that cannot succeed later (4xx, events rejected
one by one) are dropped with their reason, as without a spool.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence

from journeykit.sdk._buffer import Item
from journeykit.sdk._settings import ClientSettings
from journeykit.sdk._spool import Report, Spool
from journeykit.sdk._stats import _Counters
from journeykit.sdk._transport import BatchOutcome

__all__ = ["SPOOLABLE", "Outage", "replay", "settle_replayed", "store"]

log = logging.getLogger("journeykit")

SPOOLABLE = frozenset({"retries_exhausted", "shutdown"})
"""Failures that a later try may fix; anything else is a final answer and is not spooled."""

_MIN_WAIT = 0.05


class Outage:
    """Whether the collector is considered away, and when to try it next."""

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._failures = 0
        self._next_try = 0.0

    @property
    def active(self) -> bool:
        return self._failures > 0

    def due(self) -> bool:
        return time.monotonic() >= self._next_try

    def wait(self) -> float:
        """Seconds until the next try is due (0 when it is due now)."""
        return max(self._next_try - time.monotonic(), 0.0)

    def failed(self, retry_after: float | None) -> None:
        self._failures += 1
        if retry_after is not None:
            delay = retry_after
        else:
            cap = min(0.5 * 2 ** min(self._failures, 30), self._settings.max_backoff)
            delay = random.uniform(0, cap)  # jitter, not a secret
        self._next_try = time.monotonic() + max(delay, _MIN_WAIT)

    def recovered(self) -> None:
        self._failures = 0
        self._next_try = 0.0


def settle_replayed(
    items: Sequence[Item], outcome: BatchOutcome, counters: _Counters, report: Report
) -> None:
    """Count a replayed record that got a final answer: ``replayed``, or drops by reason."""
    if outcome.delivered:
        rejected = 0
        for index, why in outcome.rejected.items():
            if 0 <= index < len(items):
                report(items[index][0], "rejected", why)
                rejected += 1
        counters.add("replayed", len(items) - rejected)
        return
    for message_id, _ in items:
        report(message_id, outcome.failure or "http_error", outcome.detail)


def replay(
    spool: Spool,
    attempt: Callable[[list[bytes]], BatchOutcome],
    outage: Outage,
    counters: _Counters,
    report: Report,
    stop: threading.Event,
) -> None:
    """Send spooled records, oldest first, until one fails, none is left, or ``stop`` is set."""
    while not stop.is_set() and outage.due() and spool.may_have_records():
        try:
            claim = spool.claim()
        except OSError:
            log.exception("journeykit: could not read the spool in %s", spool.directory)
            outage.failed(None)
            return
        if claim is None:
            outage.recovered()  # nothing left to try the collector with
            return
        if outage.active:
            counters.add("retries")
        try:
            outcome = attempt([payload for _, payload in claim.items])
        except Exception:  # keep the record: a later try (or another process) may succeed
            log.exception("journeykit: unexpected error replaying a spool record")
            outcome = BatchOutcome(False, "shutdown")
        if not outcome.delivered and outcome.failure in SPOOLABLE:
            spool.release(claim)
            outage.failed(outcome.retry_after)
            return
        spool.done(claim)
        outage.recovered()
        settle_replayed(claim.items, outcome, counters, report)


def store(
    spool: Spool | None, items: list[Item], size: int, max_bytes: int, counters: _Counters
) -> list[Item]:
    """Spool ``items`` (blocking file I/O); return what it could not.

    In records of at most ``size`` events and ``max_bytes`` of them (commas included), as the
    worker's own batches: each record is replayed as one request, and one over the
    collector's limit would be refused whole (413) and lost.
    """
    if spool is None:
        return items
    unstored: list[Item] = []
    for chunk in batches(items, size, max_bytes):
        if spool.write(chunk):
            counters.add("spooled", len(chunk))
        else:
            unstored += chunk
    return unstored


def batches(items: list[Item], size: int, max_bytes: int) -> list[list[Item]]:
    """``items`` in order, cut into batches of at most ``size`` events and ``max_bytes``."""
    out: list[list[Item]] = []
    batch: list[Item] = []
    used = 0
    for item in items:
        nbytes = len(item[1]) + 1  # the comma that joins it
        if batch and (len(batch) >= size or used + nbytes > max_bytes):
            out.append(batch)
            batch, used = [], 0
        batch.append(item)
        used += nbytes
    if batch:
        out.append(batch)
    return out
