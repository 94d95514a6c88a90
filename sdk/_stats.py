"""Delivery counters, so that nothing the SDK discards goes unreported."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
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
]


@dataclass(frozen=True, slots=True)
class Drop:
    """One event the SDK gave up on; passed to the ``on_drop`` hook."""

    reason: DropReason
    message_id: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class ClientStats:
    """A consistent snapshot of a client's counters.

    ``queued`` counts events accepted into the queue; each of them ends up in exactly one of
    ``sent``, ``dropped`` (by reason, after queueing) or ``pending`` (still in memory).
    Drops before queueing (``invalid``, ``too_large``, ``queue_full``) are in ``dropped`` too.
    """

    queued: int
    sent: int
    pending: int
    retries: int
    requests: int
    dropped: Mapping[str, int] = field(default_factory=dict)

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
        self.dropped: Counter[str] = Counter()

    def add(self, name: Literal["queued", "sent", "retries", "requests"], n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def drop(self, reason: DropReason, n: int = 1) -> None:
        with self._lock:
            self.dropped[reason] += n

    def snapshot(self, pending: int) -> ClientStats:
        with self._lock:
            return ClientStats(
                queued=self.queued,
                sent=self.sent,
                pending=pending,
                retries=self.retries,
                requests=self.requests,
                dropped=dict(self.dropped),
            )
