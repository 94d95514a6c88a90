"""What every client shares: the path from a call to a payload ready to deliver.

:class:`Core` builds the message, records consent, passes the gate, pseudonymizes and encodes,
on the caller's thread; :class:`~journeykit.sdk.Client` and
:class:`~journeykit.sdk.AsyncClient` differ only in how they deliver (``_submit``) and in their
lifecycle. :class:`Reporter` and :func:`settle` account for every event given up on, the same
way in every client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import SecretStr

from journeykit.consent import Pseudonymizer, may_personalize
from journeykit.sdk import _message
from journeykit.sdk._buffer import Item
from journeykit.sdk._calls import Calls, Enqueued
from journeykit.sdk._consent import ConsentResolver
from journeykit.sdk._decide import DecisionCache
from journeykit.sdk._decision import Decision
from journeykit.sdk._ids import message_id as new_message_id
from journeykit.sdk._ids import pool as _id_pool
from journeykit.sdk._message import (
    JSON_OPTIONS,
    LIBRARY,
    InvalidMessage,
    MessageTooLarge,
    build,
    encode,
    json_default,
    now,
    subject_id,
)
from journeykit.sdk._privacy import Privacy
from journeykit.sdk._settings import ClientSettings
from journeykit.sdk._stats import ClientStats, Drop, _Counters
from journeykit.sdk._transport import BatchOutcome
from journeykit.sdk.protocol import MAX_EVENT_BYTES, MAX_ID_CHARS, MAX_NAME_CHARS

__all__ = ["Core", "Reporter", "settle"]

log = logging.getLogger("journeykit")

# Shared by every fused track message: nothing mutates a message (the gate and pseudonymization
# copy on write, and the fused path's rules never reach context), and it is encoded at once.
_CONTEXT: dict[str, Any] = {"library": LIBRARY}
_dumps = orjson.dumps
_time_ns = time.time_ns

_NOT_SENT = "the client was built with send=False: validated, gated and pseudonymized, not sent"


LOG_EVERY = 10.0
"""Seconds between two log lines about drops of one reason."""


class Reporter:
    """Counts, logs and hands to ``on_drop`` each event given up on.

    It holds no reference to the client, so a delivery worker holding it never keeps a client
    alive.
    """

    def __init__(self, counters: _Counters, on_drop: Callable[[Drop], None] | None) -> None:
        self._counters = counters
        self._on_drop = on_drop
        # An overloaded app drops thousands of events a second; one log line per reason per
        # LOG_EVERY seconds says so without flooding its logs (stats and on_drop see each one).
        self._logged: dict[str, float] = {}
        self._quiet: dict[str, int] = {}
        self._log_lock = threading.Lock()

    def __call__(
        self, message_id: str | None, reason: str, detail: str, level: int = logging.WARNING
    ) -> None:
        self._counters.drop(reason)
        now = time.monotonic()
        with self._log_lock:
            last = self._logged.get(reason)
            if last is not None and now - last < LOG_EVERY:
                self._quiet[reason] = self._quiet.get(reason, 0) + 1
                quiet = -1
            else:
                self._logged[reason] = now
                quiet = self._quiet.pop(reason, 0)
        if quiet >= 0:
            more = f" (and {quiet:,} more for this reason since the last line)" if quiet else ""
            log.log(
                level, "journeykit: dropped event %s (%s): %s%s", message_id, reason, detail, more
            )
        if self._on_drop is not None:
            try:
                self._on_drop(Drop(reason, message_id, detail))
            except Exception:  # a broken hook must not break tracking
                log.exception("journeykit: on_drop hook raised")


def settle(
    batch: Sequence[Item], outcome: BatchOutcome, counters: _Counters, report: Reporter
) -> dict[int, tuple[str, str]]:
    """Count a delivered or failed batch; return the drops as ``{index: (reason, detail)}``."""
    drops: dict[int, tuple[str, str]] = {}
    if outcome.delivered:
        for index, why in outcome.rejected.items():
            if 0 <= index < len(batch):
                drops[index] = ("rejected", why)
    else:
        failure = outcome.failure or "http_error"
        drops = dict.fromkeys(range(len(batch)), (failure, outcome.detail))
    for index, (reason, detail) in drops.items():
        report(batch[index][0], reason, detail)
    if len(batch) > len(drops):
        counters.add("sent", len(batch) - len(drops))
    return drops


def retry_pause(outcome: BatchOutcome) -> float | None:
    """The Retry-After a given-up batch leaves the next request to wait, said in its detail.

    The collector asked for more than the batch's retry budget: the batch is given up, but
    the next ones wait as asked rather than hammer it at once.
    """
    wait = outcome.retry_after
    if outcome.delivered or wait is None:
        return None
    outcome.detail += f"; the collector asked to wait {wait:g} s (Retry-After)"
    return wait


def crashed(exc: Exception) -> BatchOutcome:
    """The outcome of a batch whose delivery raised unexpectedly (a bug, a closed client)."""
    return BatchOutcome(False, "http_error", f"{type(exc).__name__}: {exc}")


class Core(Calls):
    """Settings, privacy and counters, and the calls' path up to delivery; see ``Client``."""

    def __init__(
        self,
        write_key: str,
        host: str,
        on_drop: Callable[[Drop], None] | None,
        consent_resolver: ConsentResolver | None,
        pseudonymizer: Pseudonymizer | None,
        options: Mapping[str, Any],
    ) -> None:
        self._settings = ClientSettings(write_key=SecretStr(write_key), host=host, **options)
        self._privacy = Privacy(self._settings, consent_resolver, pseudonymizer)
        self._on_drop = on_drop
        self._counters = _Counters()
        self._report = Reporter(self._counters, on_drop)
        self._closed = False
        self._decisions = self._new_decision_cache()
        self._send = self._settings.send  # read on every call; the settings are frozen

    @property
    def settings(self) -> ClientSettings:
        return self._settings

    def stats(self) -> ClientStats:
        """Counters: queued, sent, pending, retries, requests, drops, removed fields, not sent."""
        return self._counters.snapshot(self._pending(), self._queued())

    def _queued(self) -> int:
        """Events queued that the counters do not hold (the queue counts its own puts)."""
        return 0

    # -- decisions ------------------------------------------------------------------------------

    def _new_decision_cache(self) -> DecisionCache:
        s = self._settings
        return DecisionCache(s.decision_ttl, s.decision_cache_size)

    def _decision_subject(self, user_id: object) -> str | Decision:
        """The id to ask the collector about, or the answer that needs no request.

        ``not_consented`` when the consent known here (recorded or from the resolver) does not
        allow personalization: a withdrawal may still be on its way to the collector.
        ``unavailable`` after shutdown, when the resolver raises, or for an invalid id (which
        raises :class:`InvalidMessage` in ``strict`` mode instead).
        """
        try:
            subject = subject_id(user_id)
        except InvalidMessage as exc:
            if self._settings.strict:
                raise
            log.warning("journeykit: decide() got an invalid user id: %s", exc)
            return Decision.empty(user_id if isinstance(user_id, str) else "", "unavailable")
        if self._closed:
            return Decision.empty(subject, "unavailable")
        try:
            state = self._privacy.consents.state(subject, None)
        except Exception:  # the resolver's bug: no personalization without knowing consent
            log.exception("journeykit: consent_resolver raised; no decision asked for")
            return Decision.empty(subject, "unavailable")
        if state is not None and not may_personalize(state, self._settings.policy):
            return Decision.empty(subject, "not_consented")
        return subject

    # -- what each client provides -----------------------------------------------------------

    def _submit(self, message_id: str, payload: bytes) -> Enqueued:
        """Hand one encoded, gated, pseudonymized event to delivery."""
        raise NotImplementedError

    def _pending(self) -> int:
        raise NotImplementedError

    def _before_call(self) -> None:
        """Runs first in every call (the sync client checks here whether it was forked)."""

    # -- the shared path ----------------------------------------------------------------------

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
        self._before_call()
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
        if not self._settings.send:
            self._counters.add("not_sent")
            return Enqueued(False, mid, "not_sent", _NOT_SENT)
        return self._submit(mid, payload)

    def _track(self, user_id: object, name: object, props: object, own: bool = False) -> Enqueued:
        """The common track, fused: the same steps and outcomes as :meth:`_enqueue`.

        About half the cost: no argument checks the types already settle, no generic message
        builder, and the gate and pseudonymization walk only what such a message can hold
        (``Privacy.apply_track``). Anything unusual takes the general path.
        """
        if (
            type(user_id) is not str
            or not 0 < len(user_id) <= MAX_ID_CHARS
            or type(name) is not str
            or not 0 < len(name) <= MAX_NAME_CHARS
            or type(props) is not dict
            or self._closed
        ):
            return super()._track(user_id, name, props, own)
        self._before_call()
        # message_id() and now(), inlined: one call less each, on every track.
        mid = next(_id_pool.ids, None) or new_message_id()  # next(): one C call, thread-safe
        ms = _time_ns() // 1_000_000
        stamp = _message._milli  # (millisecond, its text): one read, never torn
        message = {
            "type": "track",
            "messageId": mid,
            "timestamp": stamp[1] if stamp[0] == ms else now(),
            "context": _CONTEXT,
            "userId": user_id,
            "event": name,
            "properties": props,
        }
        privacy = self._privacy
        verdict = privacy.apply_track(message, own)
        if verdict is None:
            verdict = privacy.apply(message)
        out, reason, detail, removed = verdict
        if out is None:
            self._drop(mid, reason, detail, logging.DEBUG)
            return Enqueued(False, mid, reason, detail)
        if removed:
            self._counters.removed(removed)
        # encode(), inlined: one call less on every track.
        try:
            raw = _dumps(out, default=json_default, option=JSON_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError
            raw = b""
        if not raw or len(raw) > MAX_EVENT_BYTES or b"null" in raw:
            try:
                encode(out)  # raises, in its words (a null may be a NaN orjson wrote so)
            except InvalidMessage as exc:
                return self._invalid(None, str(exc), exc)
        payload = bytes(memoryview(raw))  # see encode(): not orjson's whole write buffer
        if not self._send:
            self._counters.add("not_sent")
            return Enqueued(False, mid, "not_sent", _NOT_SENT)
        return self._submit(mid, payload)

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
        self._report(message_id, reason, detail, level)
