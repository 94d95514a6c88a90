"""The messageId dedup window on Redis, so a resend that reaches another worker is caught.

Same interface as :class:`journeykit.collector.dedup.Deduplicator`. Each id is one key
``<prefix>d:<messageId>``: ``reserve`` sets it to ``pending`` only if absent (``SET NX``, with a
short expiry so a worker that dies between reserve and commit frees its ids), ``commit`` sets
it to ``seen`` for the window, ``release`` deletes it if still pending. One pipelined round trip
per call. Redis expires keys itself, so memory is bounded by the traffic of one window.

If Redis cannot be reached, calls fall back to an in-process window (counted in
``fallbacks``): duplicates are then caught per worker only, and ingestion never stops for it.
The ids committed meanwhile are kept (bounded) and written to Redis, for what is left of their
window, by the first call that reaches it again, before it answers: so a batch stored during
the outage and resent afterwards, to this worker or another, is still a duplicate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import redis
from redis.exceptions import RedisError

from journeykit.collector.dedup import Deduplicator

__all__ = ["RedisDeduplicator"]

log = logging.getLogger("journeykit.collector")

PENDING_SECONDS = 60
_RELEASE = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == 'pending' then redis.call('DEL', key) end
end
return 1
"""


class RedisDeduplicator:
    """A shared time window of seen messageIds; see the module docstring."""

    def __init__(
        self,
        client: redis.Redis,
        window: float,
        prefix: str = "jk:",
        max_local_entries: int = 500_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._r = client
        self._window_ms = int(window * 1000)
        self._prefix = f"{prefix}d:"
        self._local = Deduplicator(window, max_local_entries, clock)
        self._clock = clock
        self._max_backlog = max_local_entries
        # Ids committed while Redis was away, with when: written to Redis once it is back.
        self._backlog: OrderedDict[str, float] = OrderedDict()
        self._backlog_lock = threading.Lock()
        self.fallbacks = 0

    @classmethod
    def from_url(
        cls, url: str, window: float, prefix: str = "jk:", timeout: float = 0.5
    ) -> RedisDeduplicator:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, window, prefix)

    def close(self) -> None:
        self._r.close()

    def __len__(self) -> int:
        """Ids in the local fallback window (the shared window's size is Redis' to count)."""
        return len(self._local)

    def _failed(self, exc: RedisError) -> None:
        if not self.fallbacks:
            log.warning("journeykit dedup: Redis unavailable, deduplicating per worker: %s", exc)
        self.fallbacks += 1

    def _flush_backlog(self) -> None:
        """Write the ids committed during an outage to Redis; raises RedisError if it is away."""
        with self._backlog_lock:
            if not self._backlog:
                return
            pending = list(self._backlog.items())
        now = self._clock()
        pipe = self._r.pipeline(transaction=False)
        for mid, at in pending:
            left = self._window_ms - int((now - at) * 1000)
            if left > 0:
                pipe.set(self._prefix + mid, b"seen", px=left)
        pipe.execute()
        with self._backlog_lock:
            for mid, _ in pending:
                self._backlog.pop(mid, None)

    def reserve(self, ids: Iterable[str]) -> list[bool]:
        """For each id in order: ``True`` if it is new (and now reserved), ``False`` if seen."""
        wanted = list(ids)
        if self._window_ms <= 0 or not wanted:
            return [True for _ in wanted]
        pipe = self._r.pipeline(transaction=False)
        for mid in wanted:
            pipe.set(self._prefix + mid, b"pending", nx=True, ex=PENDING_SECONDS)
        try:
            self._flush_backlog()
            answers = pipe.execute()
        except RedisError as exc:
            self._failed(exc)
            return self._local.reserve(wanted)
        # One id twice in a request: SET NX answers the second with None, as for a duplicate.
        return [bool(a) for a in answers]

    def commit(self, ids: Iterable[str]) -> None:
        wanted = list(ids)
        if self._window_ms <= 0 or not wanted:
            return
        pipe = self._r.pipeline(transaction=False)
        for mid in wanted:
            pipe.set(self._prefix + mid, b"seen", px=self._window_ms)
        try:
            pipe.execute()
        except RedisError as exc:
            self._failed(exc)
            self._local.commit(wanted)
            now = self._clock()
            with self._backlog_lock:
                for mid in wanted:
                    self._backlog[mid] = now
                while len(self._backlog) > self._max_backlog:
                    self._backlog.popitem(last=False)  # the oldest: closest to leaving anyway
        else:
            self._local.release(wanted)  # reserved here during the outage, committed in Redis

    def pending(self, ids: list[str]) -> list[str]:
        states = self._states(ids)
        if states is None:
            return self._local.pending(ids)
        return [mid for mid, state in zip(ids, states, strict=True) if state == b"pending"]

    def lost(self, ids: list[str]) -> list[str]:
        # Pending in another worker: its write may still fail, which this one cannot wait for.
        states = self._states(ids)
        if states is None:
            return self._local.lost(ids)
        return [mid for mid, state in zip(ids, states, strict=True) if state is None]

    def _states(self, ids: list[str]) -> list[bytes | None] | None:
        """Each id's key in Redis (``pending``, ``seen`` or None); None if Redis is away."""
        if self._window_ms <= 0 or not ids:
            return [b"seen"] * len(ids)
        try:
            states = [
                s if s is None or isinstance(s, bytes) else s.encode()
                for s in self._r.mget([self._prefix + mid for mid in ids])
            ]
        except RedisError as exc:
            self._failed(exc)
            return None
        return states

    def release(self, ids: Iterable[str]) -> None:
        wanted = list(ids)
        self._local.release(wanted)
        if not wanted:
            return
        try:
            self._r.eval(_RELEASE, len(wanted), *[self._prefix + m for m in wanted])
        except RedisError as exc:
            self._failed(exc)
