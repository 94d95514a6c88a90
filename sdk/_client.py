"""The synchronous client: calls that queue events and return at once.

The calls themselves (track, consent, identify, ...) are in ``_calls.py``; this module is what
happens to a message after them: privacy, queue, delivery, lifecycle.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx
from pydantic import SecretStr

from journeykit.consent import Pseudonymizer
from journeykit.sdk._buffer import Buffer
from journeykit.sdk._calls import Calls, Enqueued
from journeykit.sdk._consent import ConsentResolver
from journeykit.sdk._message import InvalidMessage, MessageTooLarge, build, encode
from journeykit.sdk._privacy import Privacy
from journeykit.sdk._settings import DEFAULT_HOST, ClientSettings
from journeykit.sdk._stats import ClientStats, Drop, _Counters
from journeykit.sdk._transport import Sender
from journeykit.sdk._worker import Worker

__all__ = ["Client", "Enqueued"]

log = logging.getLogger("journeykit")


class Client(Calls):
    """Records events and delivers them to a journeykit (or Segment-compatible) collector.

    Calls validate the event on the caller's thread, pass it through the consent gate and
    pseudonymize its personal fields, encode it, put it on a bounded queue and return; a
    background thread batches and sends. Delivery problems never raise into the app: every
    event ends up sent or dropped, and every drop is counted in :meth:`stats` and passed to
    ``on_drop``.

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
        self._settings = ClientSettings(write_key=SecretStr(write_key), host=host, **options)
        self._privacy = Privacy(self._settings, consent_resolver, pseudonymizer)
        self._transport = transport
        self._on_drop = on_drop
        self._counters = _Counters()
        self._buffer = Buffer(self._settings.max_queue_size)
        self._lock = threading.Lock()
        self._worker: Worker | None = None
        self._abort = threading.Event()
        self._closed = False
        self._exit_hook: Callable[[], None] | None = None

    @property
    def settings(self) -> ClientSettings:
        return self._settings

    # -- lifecycle --------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now and wait until it is delivered or dropped.

        Returns ``False`` if ``timeout`` seconds passed first; the events stay queued.
        """
        if self._worker is None:
            return self._buffer.pending == 0
        return self._buffer.join(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop the worker and close connections. Idempotent.

        Whatever is still undelivered when ``timeout`` runs out is dropped with reason
        ``shutdown`` (counted and reported). Returns ``True`` when nothing was dropped so.
        """
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
        deadline = None if timeout is None else time.monotonic() + timeout
        delivered = self.flush(timeout)
        self._abort.set()  # a batch still retrying gives up now
        for message_id, _ in self._buffer.close():
            self._drop(message_id, "shutdown", "still queued when shutdown gave up waiting")
        if self._worker is not None:
            # The worker closes its connections when it ends. A request stuck past the
            # deadline is left to finish on the daemon thread rather than blocking the caller.
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.05)
            self._worker.stop(remaining)
        return delivered and self._buffer.pending == 0

    def stats(self) -> ClientStats:
        """Counters: queued, sent, pending, retries, requests, drops and removed fields."""
        return self._counters.snapshot(self._buffer.pending)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(timeout=self._settings.timeout)

    # -- internals --------------------------------------------------------------------------

    def _enqueue(
        self,
        type_: str,
        user_id: object,
        anonymous_id: object,
        context: Mapping[str, Any] | None,
        timestamp: datetime | None,
        message_id: object,
        integrations: Mapping[str, Any] | None,
        fields: Mapping[str, Any],
        required: tuple[str, ...] = (),
        on_built: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> Enqueued:
        try:
            built = build(
                type_,
                user_id=user_id,
                anonymous_id=anonymous_id,
                context=context,
                timestamp=timestamp,
                message_id=message_id,
                integrations=integrations,
                fields=fields,
                required=required,
            )
            if on_built is not None:
                on_built(built)
            mid: str = built["messageId"]
            if self._closed:
                self._drop(mid, "shutdown", "the client was shut down")
                return Enqueued(False, mid, "shutdown", "the client was shut down")
            verdict = self._privacy.apply(built)
            if verdict.message is None:
                # Consent drops are the gate working as intended, not trouble: logged at DEBUG.
                self._drop(mid, verdict.reason, verdict.detail, logging.DEBUG)
                return Enqueued(False, mid, verdict.reason, verdict.detail)
            if verdict.removed:
                self._counters.removed(verdict.removed)
            payload = encode(verdict.message)
        except InvalidMessage as exc:
            return self._invalid(message_id if isinstance(message_id, str) else None, str(exc), exc)
        self._ensure_worker()
        if not self._buffer.put((mid, payload)):
            detail = f"the queue holds {self._settings.max_queue_size:,} events"
            self._drop(mid, "queue_full", detail)
            return Enqueued(False, mid, "queue_full", detail)
        self._counters.add("queued")
        return Enqueued(True, mid)

    def _invalid(
        self, message_id: str | None, detail: str, exc: InvalidMessage | None = None
    ) -> Enqueued:
        if self._settings.strict:
            raise exc or InvalidMessage(detail)
        reason = "too_large" if isinstance(exc, MessageTooLarge) else "invalid"
        self._drop(message_id, reason, detail)
        return Enqueued(False, message_id, reason, detail)

    def _drop(
        self, message_id: str | None, reason: str, detail: str, level: int = logging.WARNING
    ) -> None:
        self._counters.drop(reason)
        log.log(level, "journeykit: dropped event %s (%s): %s", message_id, reason, detail)
        if self._on_drop is not None:
            try:
                self._on_drop(Drop(reason, message_id, detail))
            except Exception:  # a broken hook must not break tracking
                log.exception("journeykit: on_drop hook raised")

    def _ensure_worker(self) -> None:
        if self._worker is not None and self._worker.alive:
            return
        with self._lock:
            if self._worker is not None and self._worker.alive:
                return
            sender = Sender(
                self._settings,
                self._transport,
                self._abort,
                on_retry=lambda: self._counters.add("retries"),
                on_request=lambda: self._counters.add("requests"),
            )
            self._worker = Worker(self._settings, self._buffer, sender, self._counters, self._drop)
            self._worker.start()
            if self._exit_hook is None:
                self._exit_hook = _exit_hook_for(self)
                atexit.register(self._exit_hook)


def _exit_hook_for(client: Client) -> Callable[[], None]:
    # A weak reference: registering the client itself with atexit would keep every client
    # ever created alive until exit.
    ref = weakref.ref(client)

    def drain() -> None:
        live = ref()
        if live is not None:
            live.shutdown(timeout=live.settings.exit_timeout)

    return drain
