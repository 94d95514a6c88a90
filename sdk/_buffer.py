"""A bounded in-memory queue of serialized events that hands them out as batches."""

from __future__ import annotations

import threading
import time
from collections import deque

__all__ = ["Buffer", "Item"]

Item = tuple[str, bytes]
"""(messageId, the message as JSON bytes); bytes keep a queued event small and final."""


class Buffer:
    """A queue that a producer never blocks on and a single consumer drains in batches.

    ``put`` refuses when full instead of blocking the app. ``take`` waits for the first item,
    then lingers until a batch is full, the linger time is over, or someone asks for a flush.
    ``done`` and ``join`` track items taken but not yet delivered, so ``flush`` can wait for
    delivery, not just for an empty queue.
    """

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._items: deque[Item] = deque()
        self._bytes = 0
        self._lock = lock = threading.Lock()
        self._cond = threading.Condition(lock)  # the consumer waits here for items
        self._idle = threading.Condition(lock)  # flush() waits here for delivery
        self._unfinished = 0
        self.accepted = 0  # every put that succeeded: the client's "queued" counter, for free
        self._urgent = False  # one-shot: send what is there now
        self._flushers = 0  # while anyone waits in join(), never linger
        self._closed = False
        # The worker sleeps until one of these thresholds is crossed; waking it on every put
        # would cost a thread switch per event.
        self._wake_count = 1
        self._wake_bytes = 1

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Item) -> bool:
        items = self._items
        with self._lock:  # the condition's own lock, without Condition.__enter__'s Python call
            count = len(items)
            if count >= self._maxsize or self._closed:
                return False
            items.append(item)
            self._bytes = size = self._bytes + len(item[1])
            self._unfinished += 1
            self.accepted += 1
            if count >= self._wake_count - 1 or size >= self._wake_bytes:
                self._cond.notify()
            return True

    def take(
        self, max_count: int, max_bytes: int, linger: float, idle: float, backlog: int = 0
    ) -> list[Item]:
        """Return the next batch, or ``[]`` after ``idle`` seconds with nothing to send.

        A batch holds up to ``max_count`` events, or up to ``backlog`` when more than
        ``max_count`` are waiting (a backlog drains in fewer, larger requests); never more than
        ``max_bytes`` of events joined by commas, but always at least one event.
        """
        with self._cond:
            self._wake_count, self._wake_bytes = 1, 1
            if not self._items and not self._closed:
                self._cond.wait(idle)
            if not self._items:
                return []
            self._wake_count, self._wake_bytes = max_count, max_bytes
            deadline = time.monotonic() + linger
            while (
                len(self._items) < max_count
                and self._bytes < max_bytes
                and not self._urgent
                and not self._flushers
                and not self._closed
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._urgent = False
            if len(self._items) > max_count:
                max_count = max(max_count, backlog)
            batch: list[Item] = []
            size = 0
            while self._items and len(batch) < max_count:
                nbytes = len(self._items[0][1]) + 1  # the comma that joins it
                if batch and size + nbytes > max_bytes:
                    break
                item = self._items.popleft()
                self._bytes -= len(item[1])
                size += nbytes
                batch.append(item)
            return batch

    def done(self, n: int) -> None:
        """Mark ``n`` taken items as finished, delivered or dropped."""
        with self._cond:
            self._unfinished -= n
            if self._flushers:
                self._idle.notify_all()

    def hurry(self) -> None:
        """Make the consumer send what it has now instead of lingering."""
        with self._cond:
            self._urgent = True
            self._cond.notify()

    def join(self, timeout: float | None) -> bool:
        """Wait until every item put before this call has been finished; ``False`` on timeout.

        Items put meanwhile are not waited for: under steady traffic the queue is never
        empty, and a flush must still end. One worker takes items in order and finishes them
        in order, so the items finished so far (``accepted - unfinished``) reaching those
        accepted at the call means each of them is.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self.accepted
            self._flushers += 1
            self._cond.notify()
            try:
                while self.accepted - self._unfinished < target:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._idle.wait(remaining)
                return True
            finally:
                self._flushers -= 1

    def close(self) -> list[Item]:
        """Refuse further puts, wake the consumer, and return what it never took."""
        with self._cond:
            self._closed = True
            left = list(self._items)
            self._items.clear()
            self._bytes = 0
            self._unfinished -= len(left)
            self._cond.notify_all()
            self._idle.notify_all()
            return left

    @property
    def pending(self) -> int:
        with self._cond:
            return self._unfinished
