"""One pass over each plain event: screening, the fast check and enrichment fused.

``events.screen``, ``events.validate`` and ``events.enrich`` each walk the batch, build
intermediate tuples and records, and read the same fields again; together they cost about
three microseconds an event. Nearly every event is an SDK's plain output, and for it
:func:`admit` does the three in one loop over the raw dicts: each field read once, one copy
of the event, no per-event record, tuple or rejection object on the way. Anything unusual
(not an object, a type the endpoint does not take, anything ``_fastcheck.check`` would leave to
pydantic) is handed, untouched or screened, to the steps themselves, which stay the reference:
:func:`admit_reference` runs them alone, and ``tests/collector/test_onepass.py`` holds the two
equal byte for byte.

Size and depth: when ``events.fits`` cannot prove the body's events small and shallow enough,
one ``orjson.dumps`` of all the screened events proves it for a body up to the size limit
(each event's bytes are a part of the list's, and the list adds one level); only when that
fails is each event measured, as ``screen`` does.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

import orjson
from pydantic import ValidationError

from journeykit.collector._fastcheck import _declared, _time
from journeykit.collector.events import (
    IsoTimes,
    Rejection,
    _corrected,
    drop_empty_ids,
    enrich,
    fits,
    screen,
    validate,
)
from journeykit.collector.settings import CollectorSettings
from journeykit.sdk.protocol import MAX_ID_CHARS, MAX_NAME_CHARS

__all__ = ["Admitted", "admit", "admit_reference"]

Admitted = tuple[list[tuple[int, dict[str, Any]]], list[Rejection]]
"""The accepted ``(index, stored form)`` pairs in batch order, and the rejections, unsorted."""

_IDS: Final = MAX_ID_CHARS
_NAMES: Final = MAX_NAME_CHARS


def admit_reference(
    events: list[Any],
    settings: CollectorSettings,
    times: IsoTimes,
    *,
    expected_type: str | None,
    context: dict[str, Any] | None,
    sent_at: datetime | None,
    source: str | None,
    client_ip: str | None,
    measure: bool = True,
    fast: bool = False,
) -> Admitted:
    """The steps one after the other: ``screen`` each event, ``validate``, ``enrich``.

    ``fast=False`` (the default) validates every event through pydantic: the definition
    :func:`admit` is tested against.
    """
    rejections: list[Rejection] = []
    screened: list[tuple[int, dict[str, Any]]] = []
    for index, raw in enumerate(events):
        outcome = screen(index, raw, settings, expected_type, context, measure=measure)
        if isinstance(outcome, Rejection):
            rejections.append(outcome)
        else:
            screened.append((index, outcome))
    return _validated(screened, rejections, times, sent_at, source, client_ip, fast=fast)


def _validated(
    screened: list[tuple[int, dict[str, Any]]],
    rejections: list[Rejection],
    times: IsoTimes,
    sent_at: datetime | None,
    source: str | None,
    client_ip: str | None,
    *,
    fast: bool,
) -> Admitted:
    valid, invalid = validate(screened, fast=fast)
    rejections += invalid
    at = times.received_at
    accepted = [
        (index, enrich(raw, model, times, at, sent_at=sent_at, source=source, client_ip=client_ip))
        for index, raw, model in valid
    ]
    return accepted, rejections


def admit(
    events: list[Any],
    settings: CollectorSettings,
    times: IsoTimes,
    *,
    expected_type: str | None,
    context: dict[str, Any] | None,
    sent_at: datetime | None,
    source: str | None,
    client_ip: str | None,
    body: bytes | None,
) -> Admitted:
    """What :func:`admit_reference` gives, plain events in one pass (see the module's doc).

    ``body`` is the JSON the events were parsed from (``None``: unknown, every event is
    measured); it may prove their size and depth needless to measure.
    """
    limit = settings.max_event_bytes
    measure = not fits(body, limit)
    received = times.received
    received_at = times.received_at
    dates: dict[str, datetime] = {}
    is_written = IsoTimes.is_written
    accepted: list[tuple[int, dict[str, Any]]] = []
    raws: list[dict[str, Any]] = []  # the screened form of each accepted event
    unscreened: list[tuple[int, Any]] = []  # for screen(), validate() and enrich()
    unsure: list[tuple[int, dict[str, Any]]] = []  # screened; for validate() and enrich()
    for index, raw in enumerate(events[: settings.max_batch_events]):
        if type(raw) is not dict:
            unscreened.append((index, raw))
            continue
        get = raw.get
        kind = get("type")
        if expected_type is not None and kind != expected_type:
            unscreened.append((index, raw))
            continue
        # Screening, as events.screen does it.
        if "writeKey" in raw:
            del raw["writeKey"]  # a key must never reach the event store
        if get("userId") == "" or get("anonymousId") == "":
            drop_empty_ids(raw)  # an empty id is no id
        own = get("context")
        if context and (own is None or type(own) is dict):
            raw["context"] = own = {**context, **(own or {})}
        # The fast check, as _fastcheck.check does it.
        if kind == "track":
            name = get("event")
            if not (type(name) is str and 0 < len(name) <= _NAMES):
                unsure.append((index, raw))
                continue
            fields = get("properties")
        else:
            plain, fields = _declared(kind, raw)
            if not plain:
                unsure.append((index, raw))
                continue
        user = get("userId")
        anonymous = get("anonymousId")
        message_id = get("messageId")
        integrations = get("integrations")
        if not (
            (
                (user is None and anonymous is not None)
                or (type(user) is str and 0 < len(user) <= _IDS)
            )
            and (anonymous is None or (type(anonymous) is str and 0 < len(anonymous) <= _IDS))
            and (message_id is None or (type(message_id) is str and 0 < len(message_id) <= _IDS))
            and (own is None or type(own) is dict)
            and (integrations is None or type(integrations) is dict)
            and (fields is None or type(fields) is dict)
        ):
            unsure.append((index, raw))
            continue
        timestamp = get("timestamp")
        sent = get("sentAt")
        original = get("originalTimestamp")
        client_text = timestamp if timestamp is not None else original
        if timestamp is not None or sent is not None or original is not None:
            try:
                timestamp = None if timestamp is None else _time(timestamp, dates)
                sent = None if sent is None else _time(sent, dates)
                original = None if original is None else _time(original, dates)
            except ValidationError:
                unsure.append((index, raw))
                continue
        # Enrichment, as events.enrich does it for a checked event.
        event = raw.copy()
        event["messageId"] = message_id or f"jk-{uuid.uuid4().hex}"
        event["receivedAt"] = received
        if "_source" in event:
            del event["_source"]  # only the collector says which source an event came from
        if source is not None:
            event["_source"] = source
        if client_ip is not None:
            if own is None:
                event["context"] = {"ip": client_ip}
            elif "ip" not in own:
                event["context"] = {**own, "ip": client_ip}
        client_time = timestamp or original
        sent = sent or sent_at
        written = False
        if client_time is not None:
            # Usually the client's own text is what times.text would write: stored as it came,
            # one of the two formats per event saved (each event of a browser's batch has its
            # own time, and formatting both took a fifth of the CPU, docs/benchmarks.md).
            written = type(client_text) is str and is_written(client_text)
            event["originalTimestamp"] = client_text if written else times.text(client_time)
        if sent is not None:
            event["sentAt"] = times.text(sent)
        if client_time is None:
            event["timestamp"] = received
        elif sent is None and written:  # nothing to correct, and already in UTC: as it came
            event["timestamp"] = client_text
        elif (
            sent is not None
            and client_time.microsecond % 1000 == 0
            and sent.microsecond % 1000 == 0
        ):
            event["timestamp"] = times.corrected(client_time, sent)  # both in whole milliseconds
        else:
            event["timestamp"] = times.text(_corrected(client_time, sent, received_at))
        accepted.append((index, event))
        raws.append(raw)
    rejections: list[Rejection] = []
    if measure and accepted and not _proved(raws, body, limit):
        accepted = _measured(accepted, raws, settings, expected_type, context, rejections)
    if len(events) > settings.max_batch_events:
        unscreened += enumerate(events[settings.max_batch_events :], settings.max_batch_events)
    if not unscreened and not unsure:
        return accepted, rejections
    # The unusual events: through the steps themselves, then back in batch order. Screened
    # ones are screened again if they must be measured: it changes nothing else.
    if measure and unsure:
        unscreened += unsure
        unsure = []
    for index, raw in unscreened:
        outcome = screen(index, raw, settings, expected_type, context, measure=measure)
        if isinstance(outcome, Rejection):
            rejections.append(outcome)
        else:
            unsure.append((index, outcome))
    unsure.sort(key=_first)
    more, rejections = _validated(unsure, rejections, times, sent_at, source, client_ip, fast=True)
    if more:
        accepted += more
        accepted.sort(key=_first)
    return accepted, rejections


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]


def _proved(raws: list[dict[str, Any]], body: bytes | None, limit: int) -> bool:
    """Whether one serialization of all ``raws`` proves each within the size and depth limits.

    Tried only for a body within the limit (``None``: unknown), as a larger one would most
    likely serialize over it: then each event is measured alone.
    """
    if body is None or len(body) > limit:
        return False
    try:
        return len(orjson.dumps(raws)) <= limit
    except orjson.JSONEncodeError:  # one may be exactly as deep as allowed: measure each
        return False


def _measured(
    accepted: list[tuple[int, dict[str, Any]]],
    raws: list[dict[str, Any]],
    settings: CollectorSettings,
    expected_type: str | None,
    context: dict[str, Any] | None,
    rejections: list[Rejection],
) -> list[tuple[int, dict[str, Any]]]:
    """``accepted`` without the events too large or deep to store, whose rejections it adds.

    ``screen`` measures each, and words the rejection; screening an event again changes
    nothing (its key is gone, and the batch context merged into its own gives the same
    keys, order and values).
    """
    limit = settings.max_event_bytes
    kept: list[tuple[int, dict[str, Any]]] = []
    for pair, raw in zip(accepted, raws, strict=True):
        try:
            small = len(orjson.dumps(raw)) <= limit
        except orjson.JSONEncodeError:
            small = False
        if small:
            kept.append(pair)
            continue
        outcome = screen(pair[0], raw, settings, expected_type, context)
        assert type(outcome) is Rejection  # measured above: screen refuses it
        rejections.append(outcome)
    return kept
