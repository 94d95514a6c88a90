"""Building and encoding messages on the caller's thread: timestamps, payload size, properties."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from pydantic import field_serializer

from journeykit.sdk import TrackEvent
from journeykit.sdk._message import build, encode

ISO_MILLIS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


def _track(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "user_id": "u1",
        "anonymous_id": None,
        "context": None,
        "timestamp": None,
        "message_id": None,
        "integrations": None,
        "fields": {"event": "Step", "properties": {"i": 1}},
        "required": ("event",),
    }
    arguments.update(overrides)
    return build("track", **arguments)


def test_the_default_timestamp_is_now_in_utc_to_the_millisecond() -> None:
    stamps = []
    for _ in range(2_000):  # calls within one millisecond share a cached text
        before = datetime.now(UTC).replace(microsecond=0)
        stamp = _track()["timestamp"]
        after = datetime.now(UTC)
        stamps.append(stamp)
        assert ISO_MILLIS_UTC.fullmatch(stamp), stamp
        assert before <= datetime.fromisoformat(stamp) <= after
    assert stamps == sorted(stamps)


def test_a_given_timestamp_is_kept_and_a_naive_one_read_as_utc() -> None:
    assert _track(timestamp=datetime(2025, 3, 1, 10, 0, 0, 123456))["timestamp"] == (
        "2025-03-01T10:00:00.123+00:00"
    )


def test_a_queued_payload_holds_no_more_memory_than_its_bytes() -> None:
    payload = encode(_track())
    assert orjson.loads(payload)["event"] == "Step"
    # orjson's own result keeps its 4 KB write buffer; a queue of 10,000 of those is 40 MB.
    assert sys.getsizeof(payload) < len(payload) + 64


def test_plain_dict_properties_are_sent_as_given_and_other_mappings_as_dicts() -> None:
    class Props(dict[str, Any]):
        pass

    message = _track(fields={"event": "Step", "properties": Props(i=2)})
    assert type(message["properties"]) is dict
    assert orjson.loads(encode(message))["properties"] == {"i": 2}


class PriceInCents(TrackEvent):
    event_name: ClassVar[str] = "Price In Cents"
    price: float
    note: str | None = None

    @field_serializer("price")
    def _cents(self, value: float) -> int:
        return round(value * 100)


def test_properties_use_the_models_own_serializers_and_leave_out_none() -> None:
    assert PriceInCents(price=1.5).properties() == {"price": 150}
