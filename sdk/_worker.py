"""The background thread that turns queued events into delivered batches."""

from __future__ import annotations

import logging
import threading

from journeykit.sdk._buffer import Buffer, Item
from journeykit.sdk._core import Reporter, crashed, settle
from journeykit.sdk._settings import ClientSettings
from journeykit.sdk._stats import _Counters
from journeykit.sdk._transport import Sender

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
    """

    def __init__(
        self,
        settings: ClientSettings,
        buffer: Buffer,
        sender: Sender,
        counters: _Counters,
        drop: Reporter,
    ) -> None:
        self._settings = settings
        self._buffer = buffer
        self._sender = sender
        self._counters = counters
        self._drop = drop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journeykit-worker", daemon=True)

    def start(self) -> None:
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
        try:
            while True:
                batch = self._buffer.take(
                    s.batch_size, s.max_batch_bytes, s.flush_interval, _IDLE_POLL
                )
                if batch:
                    self._deliver(batch)
                elif self._stop.is_set():
                    return
        finally:
            self._sender.close()

    def _deliver(self, batch: list[Item]) -> None:
        try:
            outcome = self._sender.send([payload for _, payload in batch])
        except Exception as exc:  # the worker must outlive any one bad batch
            log.exception("journeykit: unexpected error delivering a batch")
            outcome = crashed(exc)
        try:
            settle(batch, outcome, self._counters, self._drop)
        finally:
            self._buffer.done(len(batch))
