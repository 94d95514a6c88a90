"""The background thread that turns queued events into delivered (or spooled) batches."""

from __future__ import annotations

import atexit
import logging
import threading
import time

from journeykit.sdk._buffer import Buffer, Item
from journeykit.sdk._core import Reporter, crashed, retry_pause, settle
from journeykit.sdk._exit import exit_budget
from journeykit.sdk._settings import ClientSettings
from journeykit.sdk._spool import Spool
from journeykit.sdk._spool_policy import SPOOLABLE, Outage, replay, store
from journeykit.sdk._stats import _Counters
from journeykit.sdk._transport import BatchOutcome, Sender

__all__ = ["Worker"]

log = logging.getLogger("journeykit")

_IDLE_POLL = 1.0  # how often an idle worker looks up to see whether it should stop

IN_FLIGHT = "in flight when shutdown gave up waiting; the collector may have received it"
QUEUED = "still queued when shutdown gave up waiting"


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
        self._not_before = 0.0  # monotonic time a Retry-After asked the next request to wait
        # The batch being sent, until its outcome is settled; give_up() may take it first.
        self._inflight: list[Item] | None = None
        self._inflight_lock = threading.Lock()
        # Read by every call instead of Thread.is_alive() (a lock and four Python calls): set
        # before the thread starts, cleared by the thread as its last act.
        self.running = False
        self._thread = threading.Thread(target=self._run, name="journeykit-worker", daemon=True)

    def start(self) -> None:
        self.running = True
        self._thread.start()

    def finish(self) -> None:
        """Ask the thread to deliver what is queued and end; returns at once.

        For a client garbage-collected before it was shut down. Takes none of the buffer's
        locks, so it is safe from a garbage-collection finalizer on any thread; the thread
        notices within its idle poll. Until the thread ends, interpreter exit gives it
        ``exit_timeout`` seconds, as the client's own exit hook would have.
        """
        atexit.register(self._at_exit)  # before stop: the thread unregisters it as it ends
        self._stop.set()

    def _at_exit(self) -> None:
        self._buffer.hurry()
        self._thread.join(exit_budget(self._settings.exit_timeout))
        if self._thread.is_alive():
            self.give_up(self._buffer.close())

    def give_up(self, queued: list[Item]) -> None:
        """Spool, or drop with reason ``shutdown``, the batch in flight and then ``queued``.

        For a thread still busy when its time is up: a request that hangs, or retries. Its batch
        is taken from it, so whatever the request's outcome, the batch is settled once, here.
        With a spool it is sent again later (the collector discards the duplicate by
        ``messageId`` if the first request got through).
        """
        with self._inflight_lock:
            stuck, self._inflight = self._inflight, None
        s = self._settings
        for items, detail in ((stuck or [], IN_FLIGHT), (queued, QUEUED)):
            if not items:
                continue
            for message_id, _ in store(
                self._spool, items, s.batch_size, s.events_bytes, self._counters
            ):
                self._drop(message_id, "shutdown", detail)
        if stuck:
            self._buffer.done(len(stuck))

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
                self._honour_retry_after()
                batch = self._buffer.take(
                    s.batch_size, s.events_bytes, s.flush_interval, idle, backlog
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
                atexit.unregister(self._at_exit)  # registered by finish(), if it was called

    def _spool_write(self, batch: list[Item]) -> bool:
        assert self._spool is not None
        try:
            return self._spool.write(batch)
        except Exception:  # a defect must not kill the worker holding this batch: send it
            log.exception("journeykit: unexpected error writing a spool record")
            return False

    def _deliver(self, batch: list[Item]) -> None:
        if self._spool is not None and self._outage.active and self._spool_write(batch):
            self._counters.add("spooled", len(batch))  # behind the older records
            self._buffer.done(len(batch))
            return
        outcome = self._send(batch)
        if outcome is None:
            return  # give_up() took the batch and settled it
        try:
            if self._spooled(batch, outcome):
                return
            wait = retry_pause(outcome)
            if wait is not None:
                self._not_before = time.monotonic() + wait
            settle(batch, outcome, self._counters, self._drop)
        finally:
            self._buffer.done(len(batch))

    def _honour_retry_after(self) -> None:
        """Wait out a Retry-After a given-up batch left (cut short by shutdown or exit)."""
        left = self._not_before - time.monotonic()
        if left > 0 and not self._stop.is_set():
            self._stop.wait(left)

    def _send(self, batch: list[Item]) -> BatchOutcome | None:
        """The batch's outcome, or ``None`` if :meth:`give_up` took it meanwhile."""
        with self._inflight_lock:
            self._inflight = batch
        try:
            outcome = self._sender.send([payload for _, payload in batch])
        except Exception as exc:  # the worker must outlive any one bad batch
            log.exception("journeykit: unexpected error delivering a batch")
            outcome = crashed(exc)
        finally:
            with self._inflight_lock:
                mine = self._inflight is batch
                self._inflight = None
        return outcome if mine else None

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
