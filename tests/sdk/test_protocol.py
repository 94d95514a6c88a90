"""The wire models against the golden fixtures, the limits, clock skew and the JSON Schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import ROOT, WIRE, load_json
from pydantic import ValidationError

from journeykit.sdk import protocol
from journeykit.sdk.protocol import (
    BATCH_ADAPTER,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    MAX_REQUEST_BYTES,
    MESSAGE_ADAPTER,
    Alias,
    Track,
    correct_clock_skew,
)

VALID = sorted((WIRE / "messages" / "valid").glob("*.json"))
INVALID = sorted((WIRE / "messages" / "invalid").glob("*.json"))
BATCHES = sorted((WIRE / "batches").glob("*.json"))


def test_limits_are_segments() -> None:
    assert MAX_EVENT_BYTES == 32 * 1024
    assert MAX_REQUEST_BYTES == 500 * 1024
    assert MAX_BATCH_EVENTS == 2_500


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_messages_validate_from_raw_bytes(path: Path) -> None:
    message = MESSAGE_ADAPTER.validate_json(path.read_bytes())
    raw = load_json(path)
    assert message.type == raw["type"]
    assert message.userId is not None or message.anonymousId is not None


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_messages_fail_where_the_fixture_says(path: Path) -> None:
    case = load_json(path)
    with pytest.raises(ValidationError) as caught:
        MESSAGE_ADAPTER.validate_json(json.dumps(case["message"]))
    kinds = {e["type"] for e in caught.value.errors()}
    assert kinds == {e["type"] for e in case["errors"]}


@pytest.mark.parametrize("path", BATCHES, ids=lambda p: p.stem)
def test_batches_validate(path: Path) -> None:
    batch = BATCH_ADAPTER.validate_json(path.read_bytes())
    assert len(batch.batch) == len(load_json(path)["batch"])


def test_numeric_ids_become_strings_and_naive_times_utc() -> None:
    message = MESSAGE_ADAPTER.validate_json((WIRE / "messages/valid/group.json").read_bytes())
    assert message.groupId == "99"  # type: ignore[union-attr]
    naive = MESSAGE_ADAPTER.validate_python(
        {"type": "track", "userId": 7, "event": "x", "timestamp": "2026-01-01T12:00:00"}
    )
    assert naive.userId == "7"
    assert naive.timestamp == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_unknown_fields_are_kept() -> None:
    message = MESSAGE_ADAPTER.validate_json(
        (WIRE / "messages/valid/identify_extra_fields.json").read_bytes()
    )
    assert message.model_extra == {"version": 2, "channel": "server", "_metadata": {"bundled": []}}


def test_alias_needs_a_user_id_even_with_an_anonymous_id() -> None:
    with pytest.raises(ValidationError):
        MESSAGE_ADAPTER.validate_python({"type": "alias", "previousId": "a", "anonymousId": "b"})
    alias = MESSAGE_ADAPTER.validate_python({"type": "alias", "previousId": "a", "userId": "u"})
    assert isinstance(alias, Alias)


def test_batch_over_the_event_limit_is_invalid_as_a_whole() -> None:
    events = [{"type": "track", "userId": "u", "event": "e"}] * (MAX_BATCH_EVENTS + 1)
    with pytest.raises(ValidationError):
        BATCH_ADAPTER.validate_python({"batch": events})


def test_models_are_immutable() -> None:
    track = Track(type="track", userId="u", event="e")
    with pytest.raises(ValidationError):
        track.event = "other"  # type: ignore[misc]


# -- clock skew ---------------------------------------------------------------------------------

RECEIVED = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def test_skew_keeps_the_client_measured_delay() -> None:
    # The device clock is an hour slow; the event happened 5 s before sending.
    sent_at = RECEIVED - timedelta(hours=1)
    timestamp = sent_at - timedelta(seconds=5)
    assert correct_clock_skew(timestamp, sent_at, RECEIVED) == RECEIVED - timedelta(seconds=5)


def test_skew_without_sent_at_keeps_the_timestamp() -> None:
    timestamp = RECEIVED - timedelta(days=2)
    assert correct_clock_skew(timestamp, None, RECEIVED) == timestamp


def test_skew_without_timestamp_is_received_at() -> None:
    assert correct_clock_skew(None, RECEIVED, RECEIVED) == RECEIVED


def test_event_after_its_send_time_is_clamped_to_received_at() -> None:
    sent_at = RECEIVED - timedelta(seconds=1)
    assert correct_clock_skew(sent_at + timedelta(seconds=30), sent_at, RECEIVED) == RECEIVED


# -- JSON Schema --------------------------------------------------------------------------------


def test_committed_schema_matches_the_models() -> None:
    committed = json.loads((ROOT / "docs" / "protocol.schema.json").read_text(encoding="utf-8"))
    assert committed == protocol.json_schema(), "run `make schema` and commit the result"


def test_schema_describes_every_message_type() -> None:
    schema = protocol.json_schema()
    assert set(schema["$defs"]) >= {"Track", "Identify", "Page", "Screen", "Group", "Alias"}
    assert schema["properties"]["batch"]["maxItems"] == MAX_BATCH_EVENTS
