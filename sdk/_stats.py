"""Delivery counters, so that nothing the SDK discards goes unreported."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ClientStats", "Drop", "DropReason"]

DropReason = Literal[
    "invalid",  # the call's arguments do not make a valid message
    "too_large",  # the serialized message exceeds the per-event limit
    "queue_full",  # the in-memory queue was at max_queue_size
    "rejected",  # the collector refused this event (its reason is in Drop.detail)
    "http_error",  # the collector refused the whole request with a non-retryable status
    "retries_exhausted",  # retryable failures outlasted max_retries or retry_budget
    "shutdown",  # still undelivered when shutdown() or interpreter exit gave up waiting
    "spool_full",  # a spooled event evicted, oldest first, to keep the spool under its bound
    "spool_corrupt",  # a spool record that is not intact (one drop per record, moved aside)
    # The consent gate's drops (journeykit.consent.gate), before anything is queued:
    "no_consent",  # nothing known about the subject, and the regime is opt-in
    "denied:analytics",  # a purpose the event needs is denied (or unset under opt-in)
    "denied:personalization",
    "denied:marketing",
    "consent_error",  # the consent_resolver raised; the event is not sent without consent
]
"""The drop reasons this version can report. ``Drop.reason`` is typed ``str``: the gate's
``denied:<purpose>`` codes follow the purposes of :mod:`journeykit.consent`."""


@dataclass(frozen=True, slots=True)
class Drop:
    """One event the SDK gave up on; passed to the ``on_drop`` hook."""

    reason: str
    """One of :data:`DropReason`."""
    message_id: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class ClientStats:
    """A consistent snapshot of a client's counters.

    ``queued`` counts events accepted into the queue; each of them ends up in exactly one of
    ``sent``, ``spooled`` (written to the durable spool), ``dropped`` (by reason, after
    queueing) or ``pending`` (still in memory). A spooled event ends up ``replayed`` or
    dropped (``spool_full``, or the collector's final refusal), in whichever client on the
    same spool directory replays or evicts it, possibly another process.
    Drops before queueing (``invalid``, ``too_large``, ``queue_full``, and the consent gate's
    ``no_consent`` and ``denied:<purpose>``) are in ``dropped`` too.

    ``not_sent`` counts events that passed validation, the gate and pseudonymization in a
    client built with ``send=False``: they were never queued, so they are not drops either.

    ``fields_removed`` counts fields taken out of events that were still sent, by reason: the
    gate's ``strip:<purpose>`` (one per field stripped) and the pseudonymizer's
    ``invalid_phone``, ``invalid_ip``, ``not_a_string`` (a value it could not protect).
    """

    queued: int
    sent: int
    pending: int
    retries: int
    requests: int
    dropped: Mapping[str, int] = field(default_factory=dict)
    fields_removed: Mapping[str, int] = field(default_factory=dict)
    not_sent: int = 0
    spooled: int = 0
    replayed: int = 0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class _Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.queued = 0
        self.sent = 0
        self.retries = 0
        self.requests = 0
        self.not_sent = 0
        self.spooled = 0
        self.replayed = 0
        self.dropped: Counter[str] = Counter()
        self.fields_removed: Counter[str] = Counter()

    def add(
        self,
        name: Literal["queued", "sent", "retries", "requests", "not_sent", "spooled", "replayed"],
        n: int = 1,
    ) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.dropped[reason] += n

    def dropped_for(self, reason: str) -> int:
        with self._lock:
            return self.dropped[reason]

    def removed(self, reasons: Iterable[str]) -> None:
        with self._lock:
            self.fields_removed.update(reasons)

    def snapshot(self, pending: int, queued: int = 0) -> ClientStats:
        """The counters now; ``queued`` adds the puts the queue counted itself."""
        with self._lock:
            return ClientStats(
                queued=self.queued + queued,
                sent=self.sent,
                pending=pending,
                retries=self.retries,
                requests=self.requests,
                dropped=dict(self.dropped),
                fields_removed=dict(self.fields_removed),
                not_sent=self.not_sent,
                spooled=self.spooled,
                replayed=self.replayed,
            )
