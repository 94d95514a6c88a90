"""The background thread that turns queued events into delivered (or spooled) batches."""

from __future__ import annotations

import logging
import threading

from journeykit.sdk._buffer import Buffer, Item
from journeykit.sdk._core import Reporter, crashed, settle
from journeykit.sdk._settings import ClientSettings
from journeykit.sdk._spool import Spool
from journeykit.sdk._spool_policy import SPOOLABLE, Outage, replay
from journeykit.sdk._stats import _Counters
from journeykit.sdk._transport import BatchOutcome, Sender

__all__ = ["Worker"]

log = logging.getLogger("journeykit")

_IDLE_POLL = 1.0  # how often an idle worker looks up to see whether it should stop


class Worker:
    """Takes batches from the buffer and sends them, one request at a time.

    One worker per client: ordering is kept and the collector sees one connection. The thread
    is a daemon so that a forgotten client never keeps an interpreter alive; the client's exit
    hook gives it a bounded time to drain instead. It holds the buffer, the sender and the
    counters but not the client, so a client nobody holds is collected, and :meth:`finish`
    (called then) lets the thread deliver what was queued and end.

    With a spool, it also writes undeliverable batches to disk and replays records, oldest
    first, before anything newer (``_spool_policy`` says when).
    """

    def __init__(
        self,
        settings: ClientSettings,
        buffer: Buffer,
        sender: Sender,
        counters: _Counters,
        drop: Reporter,
        spool: Spool | None = None,
    ) -> None:
        self._settings = settings
        self._spool = spool
        self._outage = Outage(settings)
        self._buffer = buffer
        self._sender = sender
        self._counters = counters
        self._drop = drop
        self._stop = threading.Event()
        # Read by every call instead of Thread.is_alive() (a lock and four Python calls): set
        # before the thread starts, cleared by the thread as its last act.
        self.running = False
        self._thread = threading.Thread(target=self._run, name="journeykit-worker", daemon=True)

    def start(self) -> None:
        self.running = True
        self._thread.start()

    def finish(self) -> None:
        """Ask the thread to deliver what is queued and end; returns at once.

        Takes none of the buffer's locks, so it is safe from a garbage-collection finalizer on
        any thread; the thread notices within its idle poll.
        """
        self._stop.set()

    def stop(self, timeout: float | None) -> None:
        self._stop.set()
        self._buffer.hurry()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        s = self._settings
        backlog = max(s.batch_size, s.max_backlog_batch)
        try:
            while True:
                idle = _IDLE_POLL
                if self._spool is not None:
                    self._replay(self._spool)
                    if self._outage.active:
                        idle = min(idle, max(self._outage.wait(), 0.01))
                batch = self._buffer.take(
                    s.batch_size, s.max_batch_bytes, s.flush_interval, idle, backlog
                )
                if batch:
                    self._deliver(batch)
                elif self._stop.is_set():
                    return
        finally:
            try:
                self._sender.close()
            finally:
                self.running = False

    def _deliver(self, batch: list[Item]) -> None:
        try:
            if self._spool is not None and self._outage.active and self._spool.write(batch):
                self._counters.add("spooled", len(batch))  # behind the older records
                return
            try:
                outcome = self._sender.send([payload for _, payload in batch])
            except Exception as exc:  # the worker must outlive any one bad batch
                log.exception("journeykit: unexpected error delivering a batch")
                outcome = crashed(exc)
            if self._spooled(batch, outcome):
                return
            settle(batch, outcome, self._counters, self._drop)
        finally:
            self._buffer.done(len(batch))

    def _spooled(self, batch: list[Item], outcome: BatchOutcome) -> bool:
        if self._spool is None or outcome.delivered or outcome.failure not in SPOOLABLE:
            return False
        if not self._spool.write(batch):
            outcome.detail += "; the spool could not store it either (see the log)"
            return False
        self._counters.add("spooled", len(batch))
        self._outage.failed(outcome.retry_after)
        return True

    def _replay(self, spool: Spool) -> None:
        replay(spool, self._sender.attempt, self._outage, self._counters, self._drop, self._stop)
