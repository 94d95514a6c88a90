"""Consent shared by collectors on different hosts (data dirs), through Redis.

With ``profile_store = "redis"`` every collector process runs two threads:

- the **publisher** (:mod:`journeykit.collector._consent_publish`) puts every consent record of
  its data dir's ledger, once, into the stream ``<prefix>consent`` (``XADD`` with ``MAXLEN ~
  consent_stream_max_entries``) and into its subject's field of the snapshot hash
  ``<prefix>consent:subjects``; woken by every ledger append of this process, and looking at
  the ledger file every ``consent_sync_seconds`` for appends by other processes;
- the **reader** applies other data dirs' entries to this process's
  :class:`~journeykit.collector._consent_store.ConsentStore` (merging is idempotent and
  order-independent: the later choice wins), with ``XREAD BLOCK``: an entry is applied as soon
  as it is added, a block lasting at most ``consent_sync_seconds``.

At start, after the ledger replay, the snapshot is read before the first request is served
(short timeouts: a Redis that is away does not stop the start), then the stream from the
place the snapshot was taken. Each host's ledger stays the evidence of what that host
received: other hosts' records are never copied into it.

Redis away: the collector goes on with the consent it knows; failures are counted and logged
(the first, then at most once a minute, and the recovery), both threads retry every
``consent_sync_seconds`` doubling to 2 s, and catch up when Redis is back: the publisher from
its ledger (nothing is lost, nothing waits in memory), the reader from its place in the stream,
or from the snapshot when entries past that place were trimmed (counted as ``gaps``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from journeykit.collector._consent_store import ConsentStore

if TYPE_CHECKING:
    import redis
    from prometheus_client.core import Metric

    from journeykit.collector.metrics import Metrics
    from journeykit.collector.settings import CollectorSettings

__all__ = ["ConsentSync", "consent_sync"]

log = logging.getLogger("journeykit.collector")

_PREFIX = "jk:"  # the collector's Redis prefix (profiles and dedup use it too)
_BATCH = 1_000  # stream entries read at once
_MAX_BACKOFF = 2.0
_LOG_EVERY = 60.0
_CHECK_EVERY = 5.0  # seconds between checks that Redis still has this ledger's records
_TIMEOUT = 0.5  # seconds: connecting, publishing, and the catch-up at start


def consent_sync(
    settings: CollectorSettings, store: ConsentStore, ledger: Path, metrics: Metrics
) -> ConsentSync | None:
    """The sync of a collector on Redis, started; ``None`` with ``profile_store = "sqlite"``."""
    if settings.profile_store != "redis" or settings.redis_url is None:
        return None
    import redis

    url = settings.redis_url.get_secret_value()
    interval = settings.consent_sync_seconds
    # Two clients: the reader's connection is held by XREAD BLOCK for up to an interval.
    writer = redis.Redis.from_url(url, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT)
    reader = redis.Redis.from_url(
        url, socket_timeout=interval + _TIMEOUT, socket_connect_timeout=_TIMEOUT
    )
    sync = ConsentSync(store, ledger, writer, reader, interval, settings.consent_stream_max_entries)
    metrics.register(_SyncMetrics(sync))
    sync.start()
    return sync


def _stream_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class ConsentSync:
    """Publishes this data dir's consent to the stream and applies other hosts' entries."""

    def __init__(
        self,
        store: ConsentStore,
        ledger: Path,
        writer: redis.Redis,
        reader: redis.Redis,
        interval: float,
        max_entries: int,
        prefix: str = _PREFIX,
    ) -> None:
        from journeykit.collector._consent_publish import LedgerPublisher

        self._store = store
        self._w, self._r = writer, reader
        self._interval = interval
        self._stream = f"{prefix}consent"
        self._snapshot = f"{prefix}consent:subjects"
        keys = (self._stream, f"{prefix}consent:published", self._snapshot)
        self._publisher = LedgerPublisher(writer, ledger, keys, max_entries)
        self._cursor = "0-0"
        self._loaded = False  # whether the snapshot was read (once, then the stream)
        self._generation = store.generation
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._fail_lock = threading.Lock()
        self._failing: dict[str, float] = {}  # thread -> when its failures were last logged
        self._checked = False  # whether trimming was looked for since a failure or a lag
        self.stats = dict.fromkeys(
            ("applied", "own", "invalid", "failures", "snapshot_loads", "gaps"), 0
        )

    @property
    def available(self) -> bool:
        """Whether the last Redis call of each thread succeeded."""
        return not self._failing

    def counters(self) -> dict[str, int]:
        """The counters, for metrics: entries applied, own entries skipped, invalid ..."""
        return {
            **self.stats,
            "published": self._publisher.published,
            "ledger_malformed": self._publisher.malformed,
            "unpublished_bytes": self._publisher.behind_bytes,
        }

    def start(self) -> None:
        """Catch up with Redis (bounded by the timeouts), then start both threads."""
        self.catch_up()
        self._store.on_recorded = self._wake.set
        for name, target in (("publish", self._publish_loop), ("read", self._read_loop)):
            thread = threading.Thread(target=target, name=f"journeykit-consent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def catch_up(self) -> bool:
        """Apply what Redis holds that this store has not seen, without waiting; False on failure.

        The first call reads the snapshot of every subject, later ones the stream from where the
        last read stopped (the snapshot again if the stream was trimmed past that place).
        """
        self._checked = False
        return self._attempt("read", lambda: self._read(None))

    def close(self) -> None:
        """Stop the threads (the publisher makes a last attempt) and close the connections."""
        self._store.on_recorded = None
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(self._interval + 2 * _TIMEOUT + 1)
        self._w.close()
        self._r.close()

    # -- threads --------------------------------------------------------------------------------

    def _publish_loop(self) -> None:
        backoff = self._interval
        checked = time.monotonic()
        while True:
            stopping = self._stop.is_set()
            if time.monotonic() - checked >= _CHECK_EVERY:
                checked = time.monotonic()
                self._publisher.check_due = True
            if self._attempt("publish", self._publisher.publish):
                backoff = self._interval
            else:
                backoff = min(backoff * 2, _MAX_BACKOFF)
            if stopping:
                return
            self._wake.wait(backoff)
            self._wake.clear()

    def _read_loop(self) -> None:
        backoff = self._interval
        block = max(1, int(self._interval * 1000))
        while not self._stop.is_set():
            if self._attempt("read", lambda: self._read(block)):
                backoff = self._interval
            else:
                backoff = min(backoff * 2, _MAX_BACKOFF)
                self._stop.wait(backoff)

    def _attempt(self, name: str, call: Callable[[], object]) -> bool:
        """Run ``call``; count, log (throttled) and swallow a Redis failure."""
        import redis

        try:
            call()
        except redis.RedisError as exc:
            self.stats["failures"] += 1
            with self._fail_lock:
                now = time.monotonic()
                last = self._failing.get(name)
                if last is None or now - last >= _LOG_EVERY:
                    self._failing[name] = now
                    log.warning(
                        "journeykit consent sync: Redis unavailable (%s), consent of other hosts "
                        "waits; %d failures so far: %s",
                        name,
                        self.stats["failures"],
                        exc,
                    )
            if name == "read":
                self._checked = False
            self._publisher.check_due = True  # Redis may come back without its data
            return False
        with self._fail_lock:
            if self._failing.pop(name, None) is not None:
                log.warning("journeykit consent sync: Redis reachable again (%s)", name)
        return True

    # -- reading ----------------------------------------------------------------------------------

    def _read(self, block: int | None) -> None:
        """Apply the stream's new entries; ``block=None``: all of them, without waiting."""
        if self._store.generation != self._generation:
            # The store was cleared (its ledger replaced): other hosts' consent is read again.
            self._generation = self._store.generation
            self._loaded = False
        if not self._loaded:
            self._load_snapshot()
            self._checked = True
        while True:
            if not self._checked:
                self._checked = True
                if self._trimmed():
                    self.stats["gaps"] += 1
                    log.warning(
                        "journeykit consent sync: consent changes were trimmed from the stream "
                        "before this collector read them; reading every subject's consent from "
                        "the snapshot"
                    )
                    self._load_snapshot()
            found: Any = self._r.xread({self._stream: self._cursor}, count=_BATCH, block=block)
            entries = found[0][1] if found else []
            self._apply(entries)
            if len(entries) < _BATCH or self._stop.is_set():
                return
            # A batch or more behind: entries may be trimmed meanwhile; take the next at once.
            self._checked = False
            block = None

    def _load_snapshot(self) -> None:
        """Apply every subject's consent records from the snapshot hash, then follow the stream.

        The stream's last id is taken first: what is added while the hash is read is read again
        from the stream, and applying it twice changes nothing.
        """
        last: Any = self._r.xrevrange(self._stream, count=1)
        cursor = last[0][0].decode() if last else "0-0"
        count = 0
        for _subject, records in self._r.hscan_iter(self._snapshot, count=_BATCH):
            lines = records.split(b"\n")
            self._apply((b"", {b"r": line}) for line in lines if line)
            count += 1
        self._cursor = cursor
        self._loaded = True
        self.stats["snapshot_loads"] += 1
        log.info("journeykit consent sync: consent of %d subjects read from Redis", count)

    def _trimmed(self) -> bool:
        """Whether entries past this reader's place may have been trimmed from the stream.

        Trimmed entries are gone, ids and all: they were if some entries were trimmed (Redis 7
        counts the entries ever added) and the first one left is past this reader's place; also
        true in the rare case where trimming stopped exactly at the last entry read here.
        """
        import redis

        try:
            info: Any = self._r.xinfo_stream(self._stream)
        except redis.ResponseError:  # no stream: nothing was trimmed
            return False
        added, length = info.get("entries-added"), info.get("length")
        first = info.get("first-entry")
        if added is None or first is None or int(added) <= int(length):
            return False
        return _stream_id(first[0]) > _stream_id(self._cursor)

    def _apply(self, entries: Iterable[tuple[bytes, dict[bytes, bytes]]]) -> None:
        own = self._publisher.ledger_id
        for entry_id, raw in entries:
            if entry_id:  # empty: a record of the snapshot
                self._cursor = entry_id.decode()
            try:
                fields = orjson.loads(raw[b"r"])
                if own is not None and fields["ledger"] == own:
                    # Recorded through this data dir: its ledger already brought it here.
                    self.stats["own"] += 1
                    continue
                self._store.apply_record(
                    fields["subject"],
                    _strings(fields["linked_ids"]),
                    _strings(fields["granted"]),
                    _strings(fields["denied"]),
                    fields["source"],
                    fields["at"],
                    fields.get("notice_version"),
                )
            except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
                self.stats["invalid"] += 1
                log.warning("journeykit consent sync: entry %s ignored: %r", self._cursor, exc)
                continue
            self.stats["applied"] += 1


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"not a list of strings: {str(value)[:80]}")
    return value


class _SyncMetrics:
    """The sync's state as Prometheus metrics, read at each scrape."""

    def __init__(self, sync: ConsentSync) -> None:
        self._sync = sync

    def describe(self) -> list[Metric]:
        return []  # read at each scrape, never at registration

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily(
            "journeykit_consent_sync_available",
            "1 while Redis answers the consent sync; 0 while other hosts' consent waits.",
        )
        up.add_metric([], 1 if self._sync.available else 0)
        yield up
        counters = GaugeMetricFamily(
            "journeykit_consent_sync",
            "The consent sync's counters since start, by name (published, applied, own, "
            "invalid, failures, gaps, ledger_malformed, unpublished_bytes).",
            labels=["name"],
        )
        for name, value in self._sync.counters().items():
            counters.add_metric([name], value)
        yield counters
