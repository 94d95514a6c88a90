"""The one-pass path of ``Ingestor.prepare`` stores, answers and rejects exactly as the steps do.

Two ingestors with the same settings, each with its own sinks, dedup window and privacy step,
see the same request bodies: one takes the usual path (``_onepass.admit``: plain events in one
pass, the rest handed to the steps), the other ``reference=True`` (every event through
``screen``, pydantic and ``enrich``). Their stored lines, rejected lines and answers must be
equal byte for byte; only the messageIds made up for events without one differ, and are
masked.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import PSEUDONYM_KEY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from journeykit.collector._onepass import admit, admit_reference
from journeykit.collector.dedup import Deduplicator
from journeykit.collector.events import MAX_EVENT_DEPTH, IsoTimes
from journeykit.collector.ingest import Ingestor, parse_envelope
from journeykit.collector.privacy import PrivacyStep
from journeykit.collector.settings import CollectorSettings
from journeykit.collector.sink import NdjsonSink
from journeykit.consent import (
    ConsentLedger,
    FieldKind,
    FieldRule,
    Pseudonymizer,
    PseudonymKey,
    PseudonymRules,
    Regime,
)

RECEIVED = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
KEYS = Pseudonymizer([PseudonymKey(key_id="k1", secret=SecretStr(PSEUDONYM_KEY))])
RULES = PseudonymRules(fields=(FieldRule(path="traits.email", kind=FieldKind.EMAIL),))
MADE_UP = re.compile(rb"jk-[0-9a-f]{32}")
TYPES = ["track", "identify", "page", "screen", "group", "alias", "Track", "", "unknown"]
DATES = [
    "2026-11-23T10:00:00Z",
    "2026-11-23T09:59:58.123Z",  # as a browser writes them: stored as they came
    "2026-11-23T10:00:00.000Z",
    "0001-01-01T00:00:00.000Z",
    "9999-12-31T23:59:59.999Z",
    "2026-11-23T24:00:00.000Z",
    "2026-11-23T10:00:60.000Z",
    "2026-02-30T10:00:00.000Z",
    "2026-11-23t10:00:00.123z",
    "2026-11-23T10:00:00.123+00:00",
    "2026-11-23T10:00:00.123456+05:30",
    "2026-11-23 10:00:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "yesterday",
    1700000000,
    None,
]
# Spelled into the body as they are: JSON numbers that grow when written back.
NUMBERS = ["1e15", "1E2", "0.1e1", "18446744073709551616", "-0", "12345678901234567.0"]
SPELLED = re.compile('"<(' + "|".join(re.escape(n) for n in NUMBERS) + ')>"')


@dataclass(slots=True)
class Side:
    ingestor: Ingestor
    events: NdjsonSink
    rejected: NdjsonSink
    root: Path

    def lines(self) -> tuple[list[bytes], list[bytes]]:
        self.events.close()
        self.rejected.close()
        return _read(self.root / "events"), _read(self.root / "rejected")


def _read(folder: Path) -> list[bytes]:
    out: list[bytes] = []
    for path in sorted(folder.rglob("*.ndjson")):
        out += path.read_bytes().splitlines()
    return [MADE_UP.sub(b"jk-*", line) for line in out]


@contextmanager
def side(root: Path, s: CollectorSettings, *, reference: bool, private: bool) -> Iterator[Side]:
    events = NdjsonSink(root / "events", fsync="never")
    rejected = NdjsonSink(root / "rejected", fsync="never")
    privacy = None
    if private:
        privacy = PrivacyStep(
            ledger=ConsentLedger(root / "ledger.ndjson"),
            pseudonymizer=KEYS,
            regime=Regime.OPT_OUT,
            rules=RULES,
        )
    ingestor = Ingestor(s, events, rejected, Deduplicator(60, 1_000), privacy, reference=reference)
    try:
        yield Side(ingestor, events, rejected, root)
    finally:
        events.close()
        rejected.close()
        if privacy is not None:
            privacy.close()


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


ids = st.one_of(
    st.sampled_from(["u1", "u2", "m1", "m2"]),
    st.text(min_size=1, max_size=4),
    st.sampled_from(["", "x" * 1025, 7, 1.5, True, None, ["u"]]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from([f"<{n}>" for n in NUMBERS]),
)
objects = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["a", "email", "ip", "price"]), scalars, max_size=3),
    st.lists(scalars, max_size=2),
    scalars,
)
CONTEXTS = st.fixed_dictionaries(
    {}, optional={"ip": st.just("10.1.2.3"), "page": objects, "library": objects}
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "messageId": ids,
    "userId": ids,
    "anonymousId": ids,
    "groupId": ids,
    "previousId": ids,
    "event": st.sampled_from(["Viewed", "", "e" * 1025, 5, "Consent Updated"]),
    "name": st.sampled_from(["Home", "", "n" * 1025, 5]),
    "category": st.sampled_from(["Docs", 5]),
    "properties": objects,
    "traits": objects,
    "context": objects,
    "integrations": objects,
    "timestamp": st.sampled_from(DATES),
    "sentAt": st.sampled_from(DATES),
    "originalTimestamp": st.sampled_from(DATES),
    "writeKey": st.just("k"),
    "_source": scalars,
    "receivedAt": scalars,
}


@st.composite
def event(draw: st.DrawFn) -> Any:
    """Mostly plain events of every type, some with fields changed, deep, large or odd."""
    if draw(st.integers(0, 15)) == 0:
        return draw(scalars)  # not an object
    kind = draw(st.sampled_from(TYPES[:6]) | st.sampled_from([*TYPES[6:], None, 5]))
    raw: dict[str, Any] = {"type": kind}
    for name in draw(st.sampled_from([["userId"], ["anonymousId"], ["userId", "anonymousId"], []])):
        raw[name] = draw(st.just("u") | ids)
    if draw(st.booleans()):
        raw["messageId"] = draw(st.sampled_from(["m1", "m2", "m3"]) | st.text(max_size=6))
    required = {"track": "event", "group": "groupId", "alias": "previousId"}.get(str(kind))
    if required is not None:  # mostly plain, sometimes not
        raw[required] = draw(st.just("x") | FIELDS[required])
    for name in ("timestamp", "sentAt", "originalTimestamp"):  # client times, mostly valid
        if draw(st.integers(0, 2)) == 0:
            raw[name] = draw(st.sampled_from(DATES[:5]))
    if draw(st.booleans()):  # an own context, often sharing keys with the batch's
        raw["context"] = draw(CONTEXTS)
    for name in draw(st.lists(st.sampled_from(list(FIELDS)), max_size=4, unique=True)):
        raw[name] = draw(FIELDS[name])
    if raw.get("event") == "Consent Updated":  # an unknown purpose: refused by the privacy step
        raw["properties"] = {"purposes": draw(st.sampled_from([{"ads": True}, {"analytics": 1}]))}
    shape = draw(st.integers(0, 9))
    if shape == 0:  # deep, around what can be written back
        raw["properties"] = nested(draw(st.integers(MAX_EVENT_DEPTH - 3, MAX_EVENT_DEPTH + 1)))
    elif shape == 1:  # large, around the smallest limit
        raw["properties"] = {"p": "x" * draw(st.integers(700, 1_100))}
    return raw


def spelled(doc: Any, *, escaped: bool = False) -> bytes:
    """``doc`` as JSON, with the ``"<1e15>"`` strings written as the numbers they name;
    ``escaped``: non-ASCII text as ``\\u`` escapes, which shrink when written back."""
    return SPELLED.sub(r"\1", json.dumps(doc, ensure_ascii=escaped)).encode()


@st.composite
def request(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """A request body and its endpoint's type: a batch, or one event for ``/v1/<type>``."""
    if draw(st.integers(0, 5)) == 0:
        single = draw(st.sampled_from(TYPES[:6]))
        raw = draw(event().filter(lambda e: isinstance(e, dict)))
        if draw(st.booleans()):
            raw.pop("type", None)  # the endpoint gives it
        return spelled(raw, escaped=draw(st.booleans())), single
    doc: dict[str, Any] = {"batch": draw(st.lists(event(), max_size=6))}
    if draw(st.booleans()):
        doc["context"] = draw(CONTEXTS | st.dictionaries(st.text(max_size=3), scalars))
    if draw(st.booleans()):
        doc["sentAt"] = draw(st.sampled_from(["2026-11-23T11:59:00Z", "2026-11-23 11:00:00"]))
    return spelled(doc, escaped=draw(st.booleans())), None


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.lists(request(), min_size=1, max_size=3),
    st.sampled_from([1_024, 1_400, 32 * 1_024]),
    st.sampled_from([3, 2_500]),
    st.sampled_from([None, "web"]),
    st.sampled_from([None, "10.0.0.1"]),
    st.booleans(),
)
def test_one_pass_stores_answers_and_rejects_as_the_steps_do(
    bodies: list[tuple[bytes, str | None]],
    limit: int,
    most: int,
    source: str | None,
    client_ip: str | None,
    private: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        s = CollectorSettings(
            data_dir=root,
            write_keys=(SecretStr("k"),),
            max_event_bytes=limit,
            max_batch_events=most,
        )
        with (
            side(root / "fast", s, reference=False, private=private) as fast,
            side(root / "ref", s, reference=True, private=private) as ref,
        ):
            for body, single in bodies:
                answers = []
                for one in (fast, ref):
                    envelope = parse_envelope(body, single)
                    envelope.source, envelope.client_ip = source, client_ip
                    answer = one.ingestor.ingest(envelope, RECEIVED).as_json()
                    answers.append(MADE_UP.sub(b"jk-*", orjson.dumps(answer)))
                assert answers[0] == answers[1]
            assert fast.lines() == ref.lines()


PLAIN = {
    "type": "track",
    "userId": "u",
    "event": "Product Viewed",
    "properties": {"price": 19.9},
    "context": {"ip": "203.0.113.7"},
}


def admitted(body: bytes, limit: int, *, reference: bool) -> tuple[list[bytes], list[Any]]:
    s = CollectorSettings(
        data_dir=Path("unused"), write_keys=(SecretStr("k"),), max_event_bytes=limit
    )
    envelope = parse_envelope(body, None)
    common: dict[str, Any] = {
        "expected_type": None,
        "context": envelope.context,
        "sent_at": None,
        "source": None,
        "client_ip": None,
    }
    times = IsoTimes(RECEIVED)
    if reference:
        accepted, rejections = admit_reference(envelope.events, s, times, **common)
    else:
        accepted, rejections = admit(envelope.events, s, times, body=body, **common)
    return [MADE_UP.sub(b"jk-*", orjson.dumps(e)) for _, e in accepted], sorted(
        (r.as_json() for r in rejections), key=lambda r: r["index"]
    )


def batch(*events: Any) -> bytes:
    return json.dumps({"batch": list(events)}).encode()


@pytest.mark.parametrize("levels", [MAX_EVENT_DEPTH - 2, MAX_EVENT_DEPTH - 1, MAX_EVENT_DEPTH])
def test_depth_at_the_edge_in_a_body_too_large_for_counting(levels: int) -> None:
    # Bodies over 4 KB are not counted by ``fits``: one serialization of the events proves
    # them, and one exactly as deep as allowed makes it fail, so each is measured.
    body = batch(*[PLAIN] * 40, {**PLAIN, "properties": nested(levels)})
    assert 4_096 < len(body) <= 32 * 1_024
    ours = admitted(body, 32 * 1_024, reference=False)
    assert ours == admitted(body, 32 * 1_024, reference=True)
    assert len(ours[0]) == (41 if levels < MAX_EVENT_DEPTH else 40)


def grown(count: int) -> str:
    """An event whose ``count`` numbers take 5 bytes in the body and 19 once written back."""
    numbers = ",".join(["1e15"] * count)
    return '{"type":"track","userId":"u","event":"E","properties":{"n":[' + numbers + "]}}"


@pytest.mark.parametrize(
    ("counts", "refused"),
    [((60,), 1), ((20, 20, 20), 0), ((10, 60, 10), 1)],
)
def test_numbers_that_grow_in_a_body_within_the_limit_are_measured(
    counts: tuple[int, ...], refused: int
) -> None:
    # The body is within the 1,024-byte limit and too large for ``fits``; one serialization
    # of all its events goes over the limit: each is measured, and only a large one refused.
    body = ('{"batch":[' + ",".join(grown(n) for n in counts) + "]}").encode()
    assert 256 < len(body) <= 1_024
    assert len(orjson.dumps(orjson.loads(body)["batch"])) > 1_024
    ours = admitted(body, 1_024, reference=False)
    assert ours == admitted(body, 1_024, reference=True)
    assert [e["type"] for r in ours[1] for e in r["errors"]] == ["event_too_large"] * refused
    assert len(ours[0]) == len(counts) - refused
