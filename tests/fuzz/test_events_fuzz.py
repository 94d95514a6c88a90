"""Valid events, generated from the protocol models, survive the wire and the disk intact.

Two properties: a message the models accept serializes and validates back to the same message;
and every event the collector accepts is on disk as exactly one NDJSON line that parses back
to what was sent, whatever its strings hold (newlines, NUL, U+2028, quotes, emoji...).
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from helpers import RunningCollector, running_collector
from hypothesis import given, settings
from hypothesis import strategies as st

from journeykit.sdk.protocol import MAX_ID_CHARS, MESSAGE_ADAPTER

SCALE = int(os.environ.get("JOURNEYKIT_FUZZ_SCALE", "1"))

# Any text but lone surrogates, which JSON cannot carry as UTF-8 (tested in tests/security).
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40) | st.integers(
    0, 2**53
)
# Numbers JSON carries exactly: integers within 64 bits (orjson reads larger ones as floats,
# see tests/security/test_bounds.py) and finite floats.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)
# Keys the default pseudonymization rules leave alone (they rewrite properties.email/phone).
properties = st.dictionaries(texts.map(lambda k: "p_" + k), values, max_size=5)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["track", "identify", "page", "screen", "group", "alias"]))
    message: dict[str, Any] = {"type": kind, "messageId": uuid.uuid4().hex}
    identity = draw(st.sampled_from(["userId", "anonymousId", "both"]))
    if identity in ("userId", "both") or kind == "alias":
        message["userId"] = draw(ids)
    if identity in ("anonymousId", "both"):
        message["anonymousId"] = draw(ids)
    if kind == "track":
        message["event"] = draw(texts.filter(bool))
    if kind in ("track", "page", "screen"):
        message["properties"] = draw(properties)
    if kind in ("page", "screen") and draw(st.booleans()):
        message["name"] = draw(texts)
    if kind == "group":
        message["groupId"] = draw(ids)
    if kind == "alias":
        message["previousId"] = draw(ids)
    if kind in ("identify", "group"):
        message["traits"] = draw(properties)
    if draw(st.booleans()):
        message["timestamp"] = draw(times).isoformat()
    if draw(st.booleans()):
        message["context"] = {"library": {"name": draw(texts), "version": "1"}}
    return message


@settings(max_examples=200 * SCALE)
@given(message=messages())
def test_valid_messages_round_trip_through_the_models(message: dict[str, Any]) -> None:
    model = MESSAGE_ADAPTER.validate_python(message)
    again = MESSAGE_ADAPTER.validate_json(MESSAGE_ADAPTER.dump_json(model))
    assert again == model
    # Numeric ids are kept as their string form.
    assert model.userId == (None if "userId" not in message else str(message["userId"]))
    assert len(model.messageId or "") <= MAX_ID_CHARS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    with running_collector(tmp_path_factory.mktemp("events") / "data", fsync="never") as running:
        yield running


def stored_lines(server: RunningCollector) -> list[bytes]:
    """Every line of every events file, split on b"\\n" only (NDJSON's one separator)."""
    out: list[bytes] = []
    for path in sorted((server.data_dir / "events").rglob("*.ndjson")):
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"{path} ends inside a line"
        out.extend(data[:-1].split(b"\n"))
    return out


@settings(max_examples=60 * SCALE)
@given(batch=st.lists(messages(), min_size=1, max_size=8))
def test_every_accepted_event_is_one_line_that_parses_back(
    server: RunningCollector, batch: list[dict[str, Any]]
) -> None:
    before = len(stored_lines(server))
    response = httpx.post(
        server.url + "/v1/batch", json={"batch": batch}, headers=server.auth(), timeout=30
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["rejected"] == [], answer
    assert answer["accepted"] == len(batch), answer
    lines = stored_lines(server)
    assert len(lines) == before + len(batch)
    stored = [json.loads(line) for line in lines]
    by_id = Counter(e["messageId"] for e in stored)
    sent = {m["messageId"]: m for m in batch}
    for event in stored[before:]:
        assert by_id[event["messageId"]] == 1
        original = sent[event["messageId"]]
        for field in ("event", "properties", "traits", "name"):
            if field in original:
                assert event[field] == original[field], field
        for field in ("userId", "anonymousId", "groupId", "previousId"):
            if field in original:  # numeric ids: see test_numeric_ids_are_stored_as_strings
                assert str(event[field]) == str(original[field]), field


def test_numeric_ids_are_stored_as_strings(server: RunningCollector) -> None:
    """docs/protocol.md: "ids may be numbers (stored as strings)"."""
    batch = [
        {"type": "track", "messageId": 42, "userId": 7, "event": "E"},
        {"type": "group", "messageId": 43, "anonymousId": 8, "groupId": 9},
        {"type": "alias", "messageId": 44, "userId": 10, "previousId": 11},
    ]
    response = httpx.post(server.url + "/v1/batch", json={"batch": batch}, headers=server.auth())
    assert response.json()["accepted"] == 3
    events = [json.loads(line) for line in stored_lines(server)]
    stored = {e["messageId"]: e for e in events if str(e["messageId"]) in ("42", "43", "44")}
    assert len(stored) == 3
    for event in stored.values():
        for field in ("messageId", "userId", "anonymousId", "groupId", "previousId"):
            if field in event:
                assert isinstance(event[field], str), (field, event)
