"""The fast validation path agrees with pydantic, and the screening shortcut with measuring.

``_fastcheck.check`` may only accept what the protocol models accept, with equal derived
values; ``events.fits`` may only skip the size and depth checks when no event could fail them.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from journeykit.collector._fastcheck import _read_time, check
from journeykit.collector.dedup import Deduplicator
from journeykit.collector.events import (
    MAX_EVENT_DEPTH,
    IsoTimes,
    Rejection,
    _corrected,
    enrich,
    fits,
    screen,
    validate,
)
from journeykit.collector.ingest import Ingestor, parse_envelope
from journeykit.collector.settings import CollectorSettings
from journeykit.collector.sink import NdjsonSink
from journeykit.sdk.protocol import MESSAGE_ADAPTER

RECEIVED = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
DERIVED = (
    "messageId",
    "userId",
    "anonymousId",
    "groupId",
    "previousId",
    "timestamp",
    "sentAt",
    "originalTimestamp",
)
ODD_DATES = [
    "2026-11-23T10:00:00Z",
    "2026-11-23T10:00:00.123Z",
    "2026-11-23T10:00:00.123456+05:30",
    "2026-11-23T10:00:00",
    "2026-11-23",
    "2026-11-23 10:00:00",
    "2026-11-23T24:00:00",
    "2026-11-23T10:00:00+14:00",
    "2026-11-23T10:00:00-00:00",
    "2026-11-23T10:00:00+23:59",
    "2026-11-23T10:00:00+24:00",
    "2026-11-23T10:00:00+05:99",
    "2026-11-23T10:00:00.1234567Z",
    "2026-12-31T23:59:60Z",
    "2026-02-29T00:00:00Z",
    "2024-02-29T00:00:00Z",
    "2026-11-23t10:00:00z",
    "2026-11-23T10:00:00,5",
    "2026-11-23T10:00",
    "2026-11-23T10:00:00+0100",
    "2026-11-23T10:00:00+01",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "\uff11999-01-01T00:00:00Z",  # a fullwidth digit
    "1700000000",
    "",
    "now",
]
TYPES = ["track", "identify", "page", "screen", "group", "alias", "Track", "", "unknown"]


def lengths(*sizes: int) -> st.SearchStrategy[str]:
    return st.one_of(*(st.text(min_size=n, max_size=n) for n in sizes))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
texts = st.one_of(lengths(0, 1, 2, 1023, 1024, 1025), st.text(max_size=40), scalars)
objects = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=6), scalars, max_size=3),
    st.lists(scalars, max_size=2),
    scalars,
)
dates = st.one_of(
    st.sampled_from(ODD_DATES),
    st.datetimes(timezones=st.sampled_from([None, UTC])).map(datetime.isoformat),
    st.datetimes().map(lambda d: d.isoformat(timespec="milliseconds") + "Z"),
    scalars,
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "messageId": texts,
    "userId": texts,
    "anonymousId": texts,
    "groupId": texts,
    "previousId": texts,
    "event": texts,
    "name": texts,
    "category": texts,
    "properties": objects,
    "traits": objects,
    "context": objects,
    "integrations": objects,
    "timestamp": dates,
    "sentAt": dates,
    "originalTimestamp": dates,
    "_source": scalars,
    "model_config": scalars,
    "__class__": scalars,
}


ids = st.text(min_size=1, max_size=8)
REQUIRED = {"track": ["event"], "group": ["groupId"], "alias": ["previousId"]}


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """Valid and near-valid events: a valid one of a type, then up to four fields changed
    (dropped, or drawn again with a right or wrong type, a boundary length, an odd date)."""
    kind = draw(st.sampled_from([*TYPES, None, 5]))
    raw: dict[str, Any] = {"type": kind, "messageId": draw(ids), "userId": draw(ids)}
    for name in REQUIRED.get(kind, []) if isinstance(kind, str) else []:
        raw[name] = draw(ids)
    for name in draw(st.lists(st.sampled_from(list(FIELDS)), max_size=4, unique=True)):
        if name in raw and draw(st.booleans()):
            del raw[name]
        else:
            raw[name] = draw(FIELDS[name])
    # A screened event came from JSON, as the collector parses it (big integers as floats).
    parsed: dict[str, Any] = orjson.loads(json.dumps(raw))
    return parsed


def same_time(a: datetime | None, b: datetime | None) -> bool:
    # Equal instants are not enough: a time off the UTC calendar is stored with its offset.
    return a == b and (a is None or b is None or a.utcoffset() == b.utcoffset())


def stored(raw: dict[str, Any], model: Any) -> bytes:
    times = IsoTimes(RECEIVED)
    event = enrich(raw, model, times, RECEIVED, sent_at=None, source="web", client_ip="10.0.0.1")
    if raw.get("messageId") is None:
        event["messageId"] = "made-up"  # a random one either way
    return orjson.dumps(event)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_the_fast_path_accepts_only_what_pydantic_accepts_alike(raw: dict[str, Any]) -> None:
    agrees(raw)


TRICKY: list[Any] = [
    None,
    "",
    "x",
    "x" * 1024,
    "x" * 1025,
    "\U0001f600" * 1024,  # 1,024 characters, 4,096 bytes
    "\U0001f600" * 1025,
    0,
    7,
    1.5,
    True,
    [],
    ["x"],
    {},
    {"k": "v"},
    "2026-11-23T10:00:00Z",
]
ABSENT = object()


def agrees(raw: dict[str, Any]) -> None:
    """``check`` leaves ``raw`` to pydantic, or agrees with it on every derived value."""
    record = check(raw, {})
    if record is None:
        return
    try:
        model = MESSAGE_ADAPTER.validate_python(raw)
    except ValidationError as exc:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"fast path accepted what pydantic refuses: {raw!r}: {exc}")
    for name in DERIVED:
        ours, theirs = getattr(record, name), getattr(model, name, None)
        if isinstance(theirs, datetime):
            assert same_time(ours, theirs), name
        else:
            assert ours == theirs, name
            assert type(ours) is type(theirs), name
    assert stored(raw, record) == stored(raw, model)


@pytest.mark.parametrize("kind", ["track", "identify", "page", "screen", "group", "alias"])
def test_every_field_of_every_type_at_its_edges(kind: str) -> None:
    base: dict[str, Any] = {"type": kind, "messageId": "m", "userId": "u", "anonymousId": "a"}
    base.update(dict.fromkeys(REQUIRED.get(kind, []), "x"))
    accepted = 0
    for name in FIELDS:
        for value in [ABSENT, *TRICKY]:
            raw = {k: v for k, v in base.items() if k != name}
            if value is not ABSENT:
                raw[name] = value
            agrees(raw)
            accepted += check(raw, {}) is not None
            if name in ("userId", "anonymousId"):  # the identity rule: with the other gone
                other = "anonymousId" if name == "userId" else "userId"
                agrees({k: v for k, v in raw.items() if k != other})
    assert accepted > len(FIELDS) * 5  # the fast path is taken, not just declined


@pytest.mark.parametrize("text", ODD_DATES)
@pytest.mark.parametrize("field", ["timestamp", "sentAt", "originalTimestamp"])
def test_odd_dates_are_read_as_pydantic_reads_them_or_left_to_it(field: str, text: str) -> None:
    raw = {"type": "track", "userId": "u", "event": "E", field: text}
    record = check(raw, {})
    try:
        model = MESSAGE_ADAPTER.validate_python(raw)
    except ValidationError:
        assert record is None
    else:
        assert record is not None
        assert same_time(getattr(record, field), getattr(model, field))


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "track", "userId": "u", "event": "Order Completed", "properties": {}},
        {"type": "track", "anonymousId": "a", "event": "Ü" * 1024, "messageId": "m" * 1024},
        {"type": "identify", "userId": "u", "traits": {"plan": "pro"}, "context": {}},
        {"type": "page", "anonymousId": "a", "name": "", "category": "Docs"},
        {"type": "screen", "userId": "u", "name": None, "integrations": {"All": True}},
        {"type": "group", "userId": "u", "groupId": "g", "traits": None},
        {"type": "alias", "userId": "u", "previousId": "p", "groupId": 5},
        # Times are read by the protocol's own Timestamp type, in any form it takes.
        {"type": "track", "userId": "u", "event": "E", "timestamp": 1700000000},
        {"type": "track", "userId": "u", "event": "E", "sentAt": "2026-11-23 10:00:00"},
        {
            "type": "track",
            "userId": "u",
            "event": "E",
            "timestamp": "2026-11-23T10:00:00.123Z",
            "sentAt": "2026-11-23T10:00:01+01:00",
            "originalTimestamp": "2026-11-23T10:00:00",
        },
    ],
)
def test_plain_events_of_every_type_take_the_fast_path(raw: dict[str, Any]) -> None:
    record = check(raw, {})
    assert record is not None
    assert stored(raw, record) == stored(raw, MESSAGE_ADAPTER.validate_python(raw))


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "track", "userId": 7, "event": "E"},  # numeric id: pydantic makes it "7"
        {"type": "track", "userId": True, "event": "E"},
        {"type": "track", "userId": "", "event": "E"},
        {"type": "track", "userId": "u" * 1025, "event": "E"},
        {"type": "track", "userId": "u", "event": ""},
        {"type": "track", "userId": "u"},
        {"type": "track", "event": "E"},
        {"type": "track", "userId": None, "anonymousId": None, "event": "E"},
        {"type": "track", "userId": "u", "event": "E", "properties": []},
        {"type": "page", "userId": "u", "name": "n" * 1025},
        {"type": "group", "userId": "u"},
        {"type": "alias", "anonymousId": "a", "previousId": "p"},
        {"type": "Track", "userId": "u", "event": "E"},
        {"userId": "u", "event": "E"},
    ],
)
def test_anything_unusual_is_left_to_pydantic(raw: dict[str, Any]) -> None:
    assert check(raw, {}) is None


def sinks(tmp_path: Path) -> tuple[NdjsonSink, NdjsonSink]:
    return NdjsonSink(tmp_path / "events", fsync="never"), NdjsonSink(
        tmp_path / "rejected", fsync="never"
    )


MIXED = [
    {"type": "track", "messageId": "m0", "userId": "u1", "event": "Viewed", "properties": {}},
    {"type": "track", "messageId": "m1", "userId": 42, "event": "Viewed"},  # numeric id
    {"type": "identify", "messageId": "m2", "anonymousId": "a", "traits": {"x": 1}},
    {"type": "track", "messageId": "m3", "userId": "u", "event": ""},  # invalid
    {"type": "page", "messageId": "m4", "userId": "u", "name": "Home", "writeKey": "k"},
    {
        "type": "track",
        "messageId": "m5",
        "userId": "u",
        "event": "Bought",
        "timestamp": "2026-11-23T11:59:00.250Z",
        "sentAt": "2026-11-23T11:59:30Z",
    },
    {"type": "screen", "messageId": "m6", "userId": "u", "timestamp": "2026-11-23 10:00:00"},
    {"type": "group", "messageId": "m7", "userId": "u", "groupId": 9, "_source": "forged"},
    {"type": "alias", "messageId": "m8", "userId": "u", "previousId": "p"},
    {"type": "alias", "messageId": "m9", "anonymousId": "a", "previousId": "p"},  # invalid
    {"type": "track", "messageId": "m10", "userId": "u", "event": "E", "groupId": [1]},
    "not an event",
    {"type": "track", "messageId": "m12", "userId": "u", "event": "E", "sentAt": "yesterday"},
]


def reference(body: bytes) -> tuple[list[bytes], list[dict[str, Any]]]:
    """The stored lines and rejections of ``body`` with every event validated by pydantic."""
    envelope = parse_envelope(body, None)
    times = IsoTimes(RECEIVED)
    s = CollectorSettings(data_dir=Path("unused"), write_keys=(SecretStr("k"),))
    rejections: list[Rejection] = []
    screened: list[tuple[int, dict[str, Any]]] = []
    for index, raw in enumerate(envelope.events):
        outcome = screen(index, raw, s, None, envelope.context)
        if isinstance(outcome, Rejection):
            rejections.append(outcome)
        else:
            screened.append((index, outcome))
    valid, invalid = validate(screened, fast=False)
    lines = [
        orjson.dumps(
            enrich(raw, m, times, RECEIVED, sent_at=envelope.sent_at, source=None, client_ip=None)
        )
        for _, raw, m in valid
    ]
    return lines, [r.as_json() for r in sorted(rejections + invalid, key=lambda r: r.index)]


@pytest.mark.parametrize("batch_context", [None, {"library": {"name": "x"}}])
def test_a_mixed_batch_is_stored_and_answered_as_pydantic_alone_would(
    tmp_path: Path, batch_context: dict[str, Any] | None
) -> None:
    doc: dict[str, Any] = {"batch": MIXED, "sentAt": "2026-11-23T12:00:00Z"}
    if batch_context is not None:
        doc["context"] = batch_context
    body = orjson.dumps(doc)
    assert fits(body, 32 * 1024)  # the screening shortcut is taken too
    events_sink, rejected_sink = sinks(tmp_path)
    settings_ = CollectorSettings(data_dir=tmp_path, write_keys=(SecretStr("k"),))
    ingestor = Ingestor(settings_, events_sink, rejected_sink, Deduplicator(60, 1_000))
    result = ingestor.ingest(parse_envelope(body, None), RECEIVED)
    events_sink.close()
    rejected_sink.close()
    [path] = (tmp_path / "events").rglob("*.ndjson")
    lines, rejections = reference(body)
    assert path.read_bytes().splitlines() == lines
    assert result.as_json()["rejected"] == rejections
    assert result.accepted == len(lines) == 9


def event_body(properties: str, *, batch: bool = True) -> bytes:
    event = '{"type":"track","userId":"u","event":"E","properties":' + properties + "}"
    if not batch:
        return event.replace('"type":"track",', "").encode()
    return ('{"batch":[' + event + "]}").encode()


def screened_errors(body: bytes, single_type: str | None, limit: int) -> list[str]:
    """The screening errors of ``body``'s events, with the shortcut taken when it applies."""
    s = CollectorSettings(
        data_dir=Path("unused"), write_keys=(SecretStr("k"),), max_event_bytes=limit
    )
    envelope = parse_envelope(body, single_type)
    measure = not fits(body, limit)
    kinds = []
    for index, raw in enumerate(envelope.events):
        outcome = screen(index, raw, s, single_type, envelope.context, measure=measure)
        if isinstance(outcome, Rejection):
            kinds += [e["type"] for e in outcome.errors]
    return kinds


def padded(size: int, *, batch: bool = True) -> bytes:
    """A body whose one event serializes to exactly ``size`` bytes."""
    base = len(orjson.dumps(orjson.loads(event_body('{"p":""}'))["batch"][0]))
    return event_body('{"p":"' + "x" * (size - base) + '"}', batch=batch)


@pytest.mark.parametrize("limit", [1_024, 32 * 1_024])
def test_an_event_at_the_limit_passes_and_one_byte_over_is_refused(limit: int) -> None:
    assert screened_errors(padded(limit), None, limit) == []
    assert screened_errors(padded(limit + 1), None, limit) == ["event_too_large"]


def test_a_small_body_whose_numbers_grow_past_the_limit_is_still_refused() -> None:
    # "1e15" is 4 bytes of JSON and 18 once written back: the event outgrows its body.
    body = event_body("[" + ",".join(["1e15"] * 60) + "]")
    assert len(body) < 1_024 < len(orjson.dumps(orjson.loads(body)["batch"][0]))
    assert screened_errors(body, None, 1_024) == ["event_too_large"]


def test_a_single_event_endpoint_counts_the_type_it_adds() -> None:
    # The body is at the limit; the "type" the /v1/track endpoint adds takes it over.
    body = event_body('{"p":"' + "x" * 1_000 + '"}', batch=False)
    body = body.replace(b"x" * 1_000, b"x" * (1_000 + 1_024 - len(body)))
    assert len(body) == 1_024
    assert screened_errors(body, "track", 1_024) == ["event_too_large"]


def test_deep_nesting_in_a_small_body_is_still_refused() -> None:
    deep = '{"a":' * MAX_EVENT_DEPTH + "1" + "}" * MAX_EVENT_DEPTH
    body = event_body(deep)
    assert len(body) < 32 * 1_024
    assert not fits(body, 32 * 1_024)
    assert screened_errors(body, None, 32 * 1_024) == ["nesting_too_deep"]
    # The event object and properties are two of the 254 levels allowed: the most that fit.
    just_fits = event_body('{"a":' * (MAX_EVENT_DEPTH - 1) + "1" + "}" * (MAX_EVENT_DEPTH - 1))
    assert screened_errors(just_fits, None, 32 * 1_024) == []


def test_fits_proves_nothing_without_a_body_or_for_a_large_one() -> None:
    assert fits(event_body("{}"), 32 * 1_024)
    assert not fits(None, 32 * 1_024)
    assert not fits(event_body('{"p":"' + "x" * 8_000 + '"}'), 32 * 1_024)


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=5),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=40,
)
number_spellings = st.sampled_from(["1e15", "1E2", "0.1e1", "18446744073709551616", "-0", "1.0"])


@settings(max_examples=300, deadline=None)
@given(json_values, st.lists(number_spellings, max_size=30), st.integers(1_024, 2_048))
def test_fits_only_when_every_event_is_within_the_limits(
    value: Any, numbers: list[str], limit: int
) -> None:
    text = json.dumps(value)
    event = '{"type":"track","v":' + text + ',"n":[' + ",".join(numbers) + "]}"
    body = ('{"batch":[' + event + '],"context":{"c":' + text + "}}").encode()
    if not fits(body, limit):
        return
    s = CollectorSettings(
        data_dir=Path("unused"), write_keys=(SecretStr("k"),), max_event_bytes=limit
    )
    envelope = parse_envelope(body, None)
    raw = copy.deepcopy(envelope.events[0])
    assert screen(0, raw, s, None, envelope.context) == screen(
        0, envelope.events[0], s, None, envelope.context, measure=False
    )


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z", fullmatch=True
    ),
)
def test_a_time_stored_as_the_client_wrote_it_is_what_formatting_would_store(
    moment: datetime, text: str
) -> None:
    # ``IsoTimes.is_written``: admit stores such a client text as it came instead of
    # formatting the parsed time again; both must give the same text.
    times = IsoTimes(RECEIVED)
    written = times.text(moment.replace(tzinfo=UTC))
    assert IsoTimes.is_written(written)
    for candidate in (written, text):
        try:
            parsed = _read_time(candidate)
        except ValidationError:
            continue  # not a time (month 13, February 30th, hour 24): never stored as one
        assert IsoTimes.is_written(candidate)
        assert times.text(parsed) == candidate
    assert not IsoTimes.is_written(written.replace("Z", "+00:00"))
    assert not IsoTimes.is_written(written[:-1] + "0Z")  # microseconds


whole_ms = st.builds(
    lambda moment, ms, minutes: moment.replace(microsecond=ms * 1000, tzinfo=UTC).astimezone(
        timezone(timedelta(minutes=minutes))
    ),
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 30)),
    st.integers(0, 999),
    st.integers(-23 * 60, 23 * 60),
)


@settings(max_examples=500, deadline=None)
@given(
    whole_ms,
    whole_ms,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.booleans(),
)
def test_corrected_time_in_whole_milliseconds_is_the_formatted_corrected_time(
    client: datetime, sent: datetime, received: datetime, close: bool
) -> None:
    # ``IsoTimes.corrected``, admit's way for times of whole milliseconds, against the steps'.
    if close:  # the usual: sent seconds after the event, received about then
        sent = client + timedelta(milliseconds=abs(hash(sent)) % 100_000)
        received = client.astimezone(UTC).replace(tzinfo=None) + timedelta(
            microseconds=abs(hash(received)) % 10**8
        )
    at = received.replace(tzinfo=UTC)
    times = IsoTimes(at)
    assert times.corrected(client, sent) == times.text(_corrected(client, sent, at))
