"""The synchronous client: calls that queue events and return at once.

The calls themselves (track, consent, identify, ...) are in ``_calls.py`` and their path to an
encoded payload in ``_core.py``; this module is what happens after: queue, delivery (or
``sync_mode``'s delivery on the caller's thread), fork and exit, lifecycle.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

from journeykit.consent import Pseudonymizer
from journeykit.sdk._buffer import Buffer, Item
from journeykit.sdk._calls import Enqueued, queued
from journeykit.sdk._consent import ConsentResolver
from journeykit.sdk._core import Core, Reporter, crashed, settle
from journeykit.sdk._decide import Decider
from journeykit.sdk._decision import Decision
from journeykit.sdk._exit import exit_budget
from journeykit.sdk._fork import fork_lock, watch
from journeykit.sdk._settings import DEFAULT_HOST
from journeykit.sdk._spool import Spool
from journeykit.sdk._spool_policy import SPOOLABLE, Outage, replay, store
from journeykit.sdk._stats import Drop, _Counters
from journeykit.sdk._transport import Sender, request_headers
from journeykit.sdk._worker import QUEUED, Worker

__all__ = ["Client", "Enqueued"]

log = logging.getLogger("journeykit")


class Client(Core):
    """Records events and delivers them to a journeykit (or Segment-compatible) collector.

    Calls validate the event on the caller's thread, pass it through the consent gate and
    pseudonymize its personal fields, encode it, put it on a bounded queue and return; a
    background thread batches and sends. Delivery problems never raise into the app: every
    event ends up sent or dropped, and every drop is counted in :meth:`stats` and passed to
    ``on_drop``. With ``sync_mode=True`` each call delivers its event itself instead, and
    with ``send=False`` nothing is sent (docs/sdk.md, "Lifecycle").

    A forked child (gunicorn ``--preload``, uWSGI) gets a fresh queue, worker, locks,
    connections and counters; what the parent queued before the fork is the parent's to send.
    A client dropped without :meth:`shutdown` is garbage-collected: its thread delivers what
    was queued, then ends.

    With ``spool_dir``, batches that cannot be delivered are written to disk instead of
    dropped and replayed later, by this client or any other on the same directory; a client
    that finds records there starts its worker at once to replay them (docs/sdk.md, "Spool").

    Args:
        write_key: the collector write key.
        host: collector base URL.
        transport: an ``httpx`` transport to send through instead of the network (tests use
            ``httpx.MockTransport``).
        on_drop: called with a :class:`Drop` for each event given up on, from the thread that
            gave up (the caller's or the worker's); exceptions it raises are logged and ignored.
        consent_resolver: ``(user_id, anonymous_id) -> ConsentState | None``, the
            application's own consent lookup, called for every event; when it and
            :meth:`consent` both know a subject, the later signal wins. If it raises, the event
            is dropped (``consent_error``).
        pseudonymizer: the keys to pseudonymize with, e.g. ``Pseudonymizer.from_file(...)``
            or, for a demo only, ``Pseudonymizer.demo()``; by default ``pseudonym_key`` or the
            ``JOURNEYKIT_PSEUDONYM_KEY`` environment variables.
        **options: any field of :class:`ClientSettings`.

    Raises:
        pydantic.ValidationError: an option is unknown or invalid.
        journeykit.consent.PseudonymKeyError: pseudonymization is on and no usable key was
            found (see docs/sdk.md, "Pseudonymization").
    """

    def __init__(
        self,
        write_key: str,
        host: str = DEFAULT_HOST,
        *,
        transport: httpx.BaseTransport | None = None,
        on_drop: Callable[[Drop], None] | None = None,
        consent_resolver: ConsentResolver | None = None,
        pseudonymizer: Pseudonymizer | None = None,
        **options: Any,
    ) -> None:
        super().__init__(write_key, host, on_drop, consent_resolver, pseudonymizer, options)
        self._transport = transport
        self._background = _Background()
        weakref.finalize(self, self._background.release).atexit = False
        self._fresh_delivery()
        watch(self)
        s = self._settings
        if self._spool is not None and not s.sync_mode and s.send and self._spool.has_records():
            self._ensure_worker()  # replay what an earlier process left

    # -- decisions ------------------------------------------------------------------------------

    def decide(self, user_id: str, *, fresh: bool = False) -> Decision:
        """The collector's personalization decision for ``user_id``, cached for a moment.

        Answers from the cache for ``decision_ttl`` seconds, unless ``fresh``; otherwise asks
        ``GET {host}/v1/decisions/{user_id}`` on the caller's thread, within
        ``decision_timeout``. Never raises for delivery problems: a collector that cannot
        answer gives ``personalization="unavailable"`` (not cached). ``not_consented``, with no
        request, when the consent this client knows does not allow personalization;
        :meth:`consent` forgets the subject's cached decision. The first call opens the
        connection pool (docs/sdk.md, "Decisions").

        Raises:
            InvalidMessage: in ``strict`` mode, ``user_id`` is not a non-empty string.
        """
        self._own_process()
        found = self._decision_subject(user_id)
        if isinstance(found, Decision):
            return found
        return self._decider().decide(found, fresh=fresh)

    def _decider(self) -> Decider:
        decider = self._background.decider
        if decider is None:
            with self._lock:
                decider = self._background.decider
                if decider is None:
                    s = self._settings
                    decider = self._background.decider = Decider(
                        s.host,
                        request_headers(s),
                        timeout=s.decision_timeout,
                        cache=self._decisions,
                        transport=self._transport,
                    )
        return decider

    # -- lifecycle --------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now and wait until it is delivered, spooled or dropped.

        Returns ``False`` if ``timeout`` seconds passed first; the events stay queued. With a
        spool, ``True`` means every event tracked before the call is delivered or durably on
        disk (or was dropped and reported). Under ``sync_mode``, it also replays the spool.
        """
        self._own_process()
        if self._settings.sync_mode and self._spool is not None:
            self._replay_now(timeout)
        if self._background.worker is None:
            return self._buffer.pending == 0
        return self._buffer.join(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop the worker and close connections. Idempotent.

        Whatever is still undelivered when ``timeout`` runs out is spooled, with a spool, or
        else dropped with reason ``shutdown`` (counted and reported). Returns ``True`` when
        nothing was dropped so.
        """
        self._own_process()
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        background = self._background
        if background.exit_hook is not None:
            atexit.unregister(background.exit_hook)
            background.exit_hook = None
        deadline = None if timeout is None else time.monotonic() + timeout
        delivered = self.flush(timeout)
        given_up = self._counters.dropped_for("shutdown")
        self._abort.set()  # a batch still retrying gives up now (and is spooled, with a spool)
        left = self._buffer.close()
        worker = background.worker
        if worker is not None:
            # The worker closes its connections when it ends. A request stuck past the
            # deadline is left to end on the daemon thread rather than blocking the caller,
            # but its batch is settled now (spooled or dropped), before what was left queued.
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.05)
            worker.stop(remaining)
            if worker.alive:
                worker.give_up(left)
                left = []
        if left:  # after the worker's own last batch, so the spool keeps their order
            self._spool_or_drop(left)
        if background.sender is not None:
            background.sender.close()
            background.sender = None
        if background.decider is not None:
            background.decider.close()
            background.decider = None
        nothing_dropped = self._counters.dropped_for("shutdown") == given_up
        return (delivered or nothing_dropped) and self._buffer.pending == 0

    def _spool_or_drop(self, items: list[Item]) -> None:
        s = self._settings
        unstored = store(self._spool, items, s.batch_size, s.events_bytes, self._counters)
        for message_id, _ in unstored:
            self._drop(message_id, "shutdown", QUEUED)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(timeout=self._settings.timeout)

    # -- delivery -----------------------------------------------------------------------------

    def _before_call(self) -> None:
        self._own_process()

    def _pending(self) -> int:
        self._own_process()
        return self._buffer.pending

    def _queued(self) -> int:
        return self._buffer.accepted

    def _submit(self, message_id: str, payload: bytes) -> Enqueued:
        if self._settings.sync_mode:
            return self._deliver_now(message_id, payload)
        worker = self._background.worker
        if worker is None or not worker.running:
            self._ensure_worker()
        if not self._buffer.put((message_id, payload)):  # counts it in stats().queued
            if self._closed:
                self._drop(message_id, "shutdown", "the client was shut down")
                return Enqueued(False, message_id, "shutdown", "the client was shut down")
            detail = f"the queue holds {self._settings.max_queue_size:,} events"
            self._drop(message_id, "queue_full", detail)
            return Enqueued(False, message_id, "queue_full", detail)
        return queued(message_id)

    def _deliver_now(self, message_id: str, payload: bytes) -> Enqueued:
        # sync_mode: the same Sender, so the same retries, Retry-After and budget, on this thread.
        try:
            outcome = self._sync_sender().send([payload])
        except Exception as exc:  # e.g. shutdown() closed the connections under this call
            log.exception("journeykit: unexpected error delivering a batch")
            outcome = crashed(exc)
        self._counters.add("queued")
        spool = self._spool
        spoolable = not outcome.delivered and outcome.failure in SPOOLABLE
        if spoolable and spool is not None and spool.write([(message_id, payload)]):
            self._counters.add("spooled")
            return Enqueued(True, message_id)  # on disk; flush() replays it
        drops = settle([(message_id, payload)], outcome, self._counters, self._report)
        if drops:
            reason, detail = drops[0]
            return Enqueued(False, message_id, reason, detail)
        return Enqueued(True, message_id, delivered=True)

    def _sync_sender(self) -> Sender:
        with self._lock:
            sender = self._background.sender
            if sender is None:
                sender = self._background.sender = self._new_sender()
            return sender

    def _replay_now(self, timeout: float | None) -> None:
        # sync_mode has no worker: flush() replays on the caller's thread, bounded by timeout.
        stop = threading.Event()
        timer = None if timeout is None else threading.Timer(timeout, stop.set)
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            assert self._spool is not None
            sender = self._sync_sender()
            replay(
                self._spool,
                sender.attempt,
                Outage(self._settings),
                self._counters,
                self._report,
                stop,
            )
        finally:
            if timer is not None:
                timer.cancel()

    def _new_sender(self) -> Sender:
        counters = self._counters  # not self: the worker must not keep the client alive
        s = self._settings
        return Sender(
            s,
            self._transport,
            self._abort,
            on_retry=lambda: counters.add("retries"),
            on_request=lambda: counters.add("requests"),
            # With a spool, a batch waits on disk rather than in memory once spool_after is up.
            budget=min(s.retry_budget, s.spool_after) if self._spool is not None else None,
        )

    def _ensure_worker(self) -> None:
        background = self._background
        with self._lock:
            if self._closed or (background.worker is not None and background.worker.running):
                return
            background.worker = Worker(
                self._settings,
                self._buffer,
                self._new_sender(),
                self._counters,
                self._report,
                self._spool,
            )
            background.worker.start()
            if background.exit_hook is None:
                background.exit_hook = _exit_hook_for(self)
                atexit.register(background.exit_hook)

    # -- fork ---------------------------------------------------------------------------------

    def _fresh_delivery(self) -> None:
        self._pid = os.getpid()
        s = self._settings
        self._spool = (
            None if s.spool_dir is None else Spool(s.spool_dir, s.spool_max_bytes, self._report)
        )
        self._buffer = Buffer(self._settings.max_queue_size)
        self._lock = threading.Lock()
        self._abort = threading.Event()

    def _own_process(self) -> None:
        # The fallback for forks that skip os.register_at_fork hooks; one getpid() per call.
        if self._pid != os.getpid():
            with fork_lock():
                if self._pid != os.getpid():
                    self._after_fork()

    def _after_fork(self) -> None:
        """In a forked child: start over with nothing queued and no thread or connection.

        The parent's queue, worker and connection pool are the parent's: its queued events
        are delivered by the parent only. They are abandoned here, not closed, since closing
        could touch sockets the parent still uses. Counters start at zero for this process.
        """
        self._counters = _Counters()
        self._report = Reporter(self._counters, self._on_drop)
        self._privacy.after_fork()
        if self._spool is not None:
            self._spool.forget_after_fork()
        self._background.worker = None
        self._background.sender = None
        self._background.decider = None
        self._decisions = self._new_decision_cache()  # its lock may have been held
        self._fresh_delivery()


class _Background:
    """What outlives a call: the worker, sync_mode's sender, decide()'s pool, the exit hook.

    It holds no reference to the client, so a client nobody holds is garbage-collected; its
    finalizer then calls :meth:`release`.
    """

    def __init__(self) -> None:
        self.worker: Worker | None = None
        self.sender: Sender | None = None
        self.decider: Decider | None = None
        self.exit_hook: Callable[[], None] | None = None

    def release(self) -> None:
        if self.exit_hook is not None:
            atexit.unregister(self.exit_hook)
            self.exit_hook = None
        if self.worker is not None:
            self.worker.finish()  # it delivers what was queued, closes its connections, ends
        if self.sender is not None:
            self.sender.close()
            self.sender = None
        if self.decider is not None:
            self.decider.close()
            self.decider = None


def _exit_hook_for(client: Client) -> Callable[[], None]:
    # A weak reference: registering the client itself with atexit would keep every client
    # ever created alive until exit. A forked child inherits the hook, and drains its own queue.
    ref = weakref.ref(client)

    def drain() -> None:
        live = ref()
        if live is not None:
            live.shutdown(timeout=exit_budget(live.settings.exit_timeout))

    return drain
