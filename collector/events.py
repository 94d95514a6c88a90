"""Per-event checks of one request: screen, validate, enrich.

Split in three so that validation, the costly part, is paid once per batch and only where
needed: the cheap screening (shape, limits, endpoint type, batch context, size) goes event by
event; then the hand-written ``_fastcheck.check`` accepts the plainly valid events, with the
values their models would hold, and one ``validate_python`` call takes the rest; only when
those hold an invalid event are they validated one by one again, for per-event errors.
``Ingestor.prepare`` runs the three fused in one pass for plain events (``_onepass.admit``)
and keeps these for anything unusual; together, in order, they are the reference.
"""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from journeykit.collector._fastcheck import Checked, check
from journeykit.collector.errors import validation_errors
from journeykit.collector.settings import CollectorSettings
from journeykit.sdk.protocol import MESSAGE_ADAPTER, Message, correct_clock_skew

__all__ = ["MAX_EVENT_DEPTH", "IsoTimes", "Rejection", "enrich", "fits", "screen", "validate"]

MAX_EVENT_DEPTH = 254
"""Nesting levels an event may have: what ``orjson.dumps`` can write back (the event included)."""

_COUNTED = 16 * MAX_EVENT_DEPTH  # the largest body ``fits`` counts; see there

_IDS = ("userId", "anonymousId", "groupId", "previousId")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_FIRST_MS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MS  # datetime's first instant
_SECONDS = tuple(f"{second:02d}." for second in range(60))
_MILLIS = tuple(f"{milli:03d}Z" for milli in range(1000))
_WRITTEN = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z"
).fullmatch


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    message_id: str | None
    errors: list[dict[str, str]]

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "messageId": self.message_id, "errors": self.errors}


def _err(path: str, message: str, kind: str) -> dict[str, str]:
    return {"path": path, "message": message, "type": kind}


def _message_id(raw: dict[str, Any]) -> str | None:
    mid = raw.get("messageId")
    return mid if isinstance(mid, str) else None


class IsoTimes:
    """ISO 8601 UTC text of times, with the request's receive time made once.

    Most events carry no time of their own, so their corrected ``timestamp`` is the receive
    time; formatting a datetime costs about a microsecond, paid once per request instead.
    """

    __slots__ = ("_known", "_minutes", "_received_ms", "received", "received_at")

    def __init__(self, received_at: datetime) -> None:
        self._known: dict[datetime, str] = {}
        self._minutes: dict[int, str] = {}  # minutes since 1970 -> "YYYY-MM-DDTHH:MM:"
        self.received_at = received_at
        self._received_ms = (received_at - _EPOCH) // _MS
        self.received = self.text(received_at)
        """The text of ``received_at``; every event's ``receivedAt``, and most ``timestamp``."""

    def text(self, value: datetime) -> str:
        """``value`` in UTC; one whose UTC form leaves years 1-9999 keeps its own offset.

        ``0001-01-01T00:00:00+01:00`` is year 0 in UTC, which ``datetime`` cannot hold: such a
        client time is stored as the client wrote it rather than lost or turned into a 500.
        """
        found = self._known.get(value)
        if found is None:
            try:
                found = value.astimezone(UTC).isoformat(timespec="milliseconds")
            except OverflowError:
                return value.isoformat(timespec="milliseconds")
            found = found.replace("+00:00", "Z")
            if len(self._known) < 64:  # a batch's shared times; per-event ones are not kept
                self._known[value] = found
        return found

    def corrected(self, client: datetime, sent: datetime) -> str:
        """``text(_corrected(client, sent, received_at))`` for times of whole milliseconds.

        Both must have a microsecond that is a multiple of 1,000 (the caller checks): then the
        client's delay is whole milliseconds, and the corrected time's milliseconds are the
        receive time's minus that delay, written from a minute's text made once per request.
        Formatting each event's corrected time as a datetime cost about 2 us; a browser's
        batch has as many of them as events.
        """
        if sent < client:  # sent before it happened: the receive time (correct_clock_skew)
            return self.received
        ms = self._received_ms - (sent - client) // _MS
        if ms < _FIRST_MS:  # before year 1: a clock too wrong to correct (_corrected)
            return self.received
        minute, rest = divmod(ms, 60_000)
        prefix = self._minutes.get(minute)
        if prefix is None:
            prefix = (_EPOCH + timedelta(minutes=minute)).isoformat()[:17]
            if len(self._minutes) < 64:
                self._minutes[minute] = prefix
        second, milli = divmod(rest, 1000)
        return prefix + _SECONDS[second] + _MILLIS[milli]  # a formatted f-string cost 0.4 us

    @staticmethod
    def is_written(text: str) -> bool:
        """Whether ``text``, once read as a time, is what :meth:`text` writes for it.

        A browser's ``Date.toISOString()`` and our SDK write their times so (UTC, milliseconds,
        ``Z``): such a client text can be stored as it came, where formatting the parsed time
        again costs about 1.5 us. Only for a text the protocol has read as a time, which rules
        out impossible dates (February 30th, hour 24, second 60: the pattern excludes the last
        two as well).
        """
        return _WRITTEN(text) is not None


def screen(
    index: int,
    raw: Any,
    settings: CollectorSettings,
    expected_type: str | None,
    context: dict[str, Any] | None,
    *,
    measure: bool = True,
) -> dict[str, Any] | Rejection:
    """The checks before validation; merges the batch ``context`` into the event's own.

    ``measure=False`` skips serializing the event to check its size and depth, for a request
    :func:`fits` proved holds no event too large or too deep.
    """
    if not isinstance(raw, dict):
        return Rejection(index, None, [_err("", "each event must be an object", "not_an_object")])
    raw.pop("writeKey", None)  # a key must never reach the event store
    drop_empty_ids(raw)
    if index >= settings.max_batch_events:
        message = f"the batch has more than {settings.max_batch_events:,} events"
        return Rejection(index, _message_id(raw), [_err("", message, "batch_too_large")])
    if expected_type is not None and raw.get("type") != expected_type:
        message = f"this endpoint takes {expected_type} messages"
        return Rejection(index, _message_id(raw), [_err("type", message, "type_mismatch")])
    own_context = raw.get("context")
    if context and (own_context is None or isinstance(own_context, dict)):
        raw["context"] = {**context, **(own_context or {})}
    if not measure:
        return raw
    try:
        size = len(orjson.dumps(raw))
    except orjson.JSONEncodeError:
        # The parser accepts 1,024 levels, the serializer only 254; parsed JSON holds nothing
        # else it could refuse (lone surrogates and bad bytes were refused with the body).
        message = f"the event nests deeper than {MAX_EVENT_DEPTH} levels"
        return Rejection(index, _message_id(raw), [_err("", message, "nesting_too_deep")])
    if size > settings.max_event_bytes:
        message = f"the event is {size:,} bytes; the limit is {settings.max_event_bytes:,}"
        return Rejection(index, _message_id(raw), [_err("", message, "event_too_large")])
    return raw


def drop_empty_ids(raw: dict[str, Any]) -> None:
    """An empty ``userId`` or ``anonymousId`` is no id: removed, as if it were not sent.

    RudderStack's JavaScript SDK sends ``"userId": ""`` for every visitor not identified yet
    (and after ``reset()``); its server, like Segment's, takes it as absent and needs one of
    the two ids. Validation then asks the same of what remains.
    """
    if raw.get("userId") == "":
        del raw["userId"]
    if raw.get("anonymousId") == "":
        del raw["anonymousId"]


def fits(body: bytes | None, max_event_bytes: int) -> bool:
    """Whether the request ``body`` proves none of its events too large or too deep to store.

    ``screen`` serializes each event to learn both, about half its cost; a small body makes
    that needless (``None``: no body known, nothing proved). Exact reasons, not estimates:

    - Depth: an event's levels are distinct ``{``/``[`` bytes of the body (the merged batch
      context's too), so a body with at most ``MAX_EVENT_DEPTH`` of them holds none deeper.
    - Size: orjson writes strings, keys, integers and literals in no more bytes than JSON can
      spell them, and an event with the batch context merged in is no longer than the body.
      Numbers can grow: a float (each has a ``.``, ``e`` or ``E``) from 3 bytes (``1e15``
      even to 18), at most to 24; an integer past 64 bits (20+ digits, read as a float) by 2.
      A ``/v1/<type>`` event gains its ``"type"`` (under 32 bytes).

    Counting costs a pass over the body, repaid only when the answer may be yes: JSON events
    hold about one such mark in 12 bytes, so bodies over 16 bytes per allowed mark (4 KB)
    are not counted, nor ones over a quarter of the limit.
    """
    if body is None:
        return False
    size = len(body)
    if size > _COUNTED or 4 * size > max_event_bytes:
        return False
    marks = size - len(body.translate(None, b"{[.eE"))  # brackets, and every float's mark
    return marks <= MAX_EVENT_DEPTH and size + 21 * marks + size // 10 + 32 <= max_event_bytes


@functools.cache
def _batch_adapter() -> TypeAdapter[list[Message]]:
    return TypeAdapter(list[Message])


def validate(
    screened: list[tuple[int, dict[str, Any]]], *, fast: bool = True
) -> tuple[list[tuple[int, dict[str, Any], Any]], list[Rejection]]:
    """``(index, raw, model)`` of the valid events, and a rejection for each invalid one.

    The plainly valid events pass :func:`~journeykit.collector._fastcheck.check`, whose record
    stands in for the model; pydantic validates the rest. ``fast=False`` sends every event
    through pydantic: the reference the fast check is tested against.
    """
    if not screened:
        return [], []
    if not fast:
        return _pydantic(screened)
    dates: dict[str, datetime] = {}
    checked = [check(raw, dates) for _, raw in screened]
    unsure = [pair for pair, record in zip(screened, checked, strict=True) if record is None]
    if not unsure:
        return [(i, raw, r) for (i, raw), r in zip(screened, checked, strict=True)], []
    valid, rejected = _pydantic(unsure)
    if len(unsure) == len(screened):
        return valid, rejected
    models = {i: model for i, _, model in valid}
    merged = [
        (i, raw, models[i] if record is None else record)
        for (i, raw), record in zip(screened, checked, strict=True)
        if record is not None or i in models
    ]
    return merged, rejected


def _pydantic(
    screened: list[tuple[int, dict[str, Any]]],
) -> tuple[list[tuple[int, dict[str, Any], Any]], list[Rejection]]:
    try:
        models = _batch_adapter().validate_python([raw for _, raw in screened])
    except ValidationError:
        pass  # at least one is invalid: the per-event pass below says which, and why
    else:
        return [(i, raw, m) for (i, raw), m in zip(screened, models, strict=True)], []
    valid: list[tuple[int, dict[str, Any], Any]] = []
    rejected: list[Rejection] = []
    for index, raw in screened:
        try:
            valid.append((index, raw, MESSAGE_ADAPTER.validate_python(raw)))
        except ValidationError as exc:
            rejected.append(Rejection(index, _message_id(raw), validation_errors(exc)))
    return valid, rejected


def enrich(
    raw: dict[str, Any],
    model: Any,
    times: IsoTimes,
    received_at: datetime,
    *,
    sent_at: datetime | None,
    source: str | None,
    client_ip: str | None,
) -> dict[str, Any]:
    """The stored form of a valid event: ids, receive time, source, address, clock skew.

    ``model`` is the event's pydantic model or its :class:`Checked` record, which holds the
    same values.
    """
    event = dict(raw)
    event["messageId"] = model.messageId or f"jk-{uuid.uuid4().hex}"
    received = times.received if received_at is times.received_at else times.text(received_at)
    event["receivedAt"] = received
    event.pop("_source", None)  # only the collector says which source an event came from
    if source is not None:
        event["_source"] = source
    if client_ip is not None:
        # As Segment does; the privacy step then truncates it, or strips it with marketing.
        context = event.get("context")
        if context is None:
            event["context"] = {"ip": client_ip}
        elif isinstance(context, dict) and "ip" not in context:
            event["context"] = {**context, "ip": client_ip}
    client_time = model.timestamp or model.originalTimestamp
    sent = model.sentAt or sent_at
    # Keys keep this order (new ones are appended): stored lines stay byte for byte the same.
    if client_time is not None:
        event["originalTimestamp"] = times.text(client_time)
    if sent is not None:
        event["sentAt"] = times.text(sent)
    if client_time is None:
        event["timestamp"] = received  # what the correction gives, without computing it
    else:
        event["timestamp"] = times.text(_corrected(client_time, sent, received_at))
    if type(model) is not Checked:
        # A checked event's ids are strings already, or extras the model keeps as sent.
        for key in _IDS:
            # Ids may be sent as numbers; the model made them strings, and strings are stored.
            if key in event and type(event[key]) is not str:
                event[key] = getattr(model, key, None)
    return event


def _corrected(client: datetime | None, sent: datetime | None, received_at: datetime) -> datetime:
    """The clock-skew-corrected time, or ``received_at`` when that leaves the calendar.

    A client whose times are thousands of years apart (``0009-...`` sent at ``8192-...``) has a
    clock too wrong to correct, and the receive time is the best estimate left; its own times
    stay in ``originalTimestamp`` and ``sentAt``.
    """
    try:
        return correct_clock_skew(client, sent, received_at).astimezone(UTC)
    except OverflowError:
        return received_at
