"""Hostile shapes get a defined answer: deep nesting, huge numbers, long strings, odd dates.

Defined means: one of the documented statuses with the documented JSON body, never a 500, and
the same server answering the next request. Memory and CPU are bounded by the byte limits
checked before parsing (32 KB an event, 500 KB a request); these tests show the limits hold
for the shapes that usually slip past byte limits.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from helpers import RunningCollector

from journeykit.collector.errors import ERROR_CODES


def post(c: RunningCollector, body: bytes | dict[str, Any]) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**c.auth(), "Content-Type": "application/json"}
    answer = httpx.post(c.url + "/v1/batch", content=content, headers=headers, timeout=60)
    assert answer.status_code in (200, 400, 413), answer.text
    document = answer.json()
    if answer.status_code != 200:
        assert document["error"]["code"] in ERROR_CODES[answer.status_code]
    return answer


def nested(depth: int) -> bytes:
    """A batch whose one event's ``properties`` nest ``depth`` objects deep."""
    value = '{"a":' * depth + "1" + "}" * depth
    event = '{"type": "track", "userId": "u", "event": "E", "properties": ' + value + "}"
    return ('{"batch": [' + event + "]}").encode()


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u", "event": "E", **fields}


@pytest.mark.parametrize("depth", [100, 300, 1_000, 20_000])
def test_deep_nesting_is_stored_or_rejected(collector: RunningCollector, depth: int) -> None:
    answer = post(collector, nested(depth))
    if answer.status_code == 200:
        result = answer.json()
        assert result["accepted"] + len(result["rejected"]) == 1
    healthy = post(collector, {"batch": [track()]})
    assert healthy.json()["accepted"] == 1


@pytest.mark.parametrize(
    "number", ["1e400", "-1e400", "1" * 400, "1e-400", "123456789012345678901234567890", "NaN"]
)
def test_huge_numbers_have_a_defined_answer(collector: RunningCollector, number: str) -> None:
    raw = '{"batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"n": %s}}]}'
    answer = post(collector, (raw % number).encode())
    if answer.status_code == 200:
        assert answer.json()["accepted"] == 1
        stored = collector.events[-1]["properties"]["n"]
        assert isinstance(stored, int | float)


def test_long_strings_are_rejected_per_event(collector: RunningCollector) -> None:
    long = "x" * 40_000  # over the 32 KB event limit, under the request limit
    answer = post(collector, {"batch": [track(event=long), track(), track(userId=long)]})
    result = answer.json()
    assert result["accepted"] == 1
    kinds = sorted(e["type"] for r in result["rejected"] for e in r["errors"])
    assert kinds == ["event_too_large", "event_too_large"]


def test_many_small_values_stay_within_the_request_limit(collector: RunningCollector) -> None:
    # 500 KB of tiny keys: parsing cost is linear in the bytes, which the limit caps.
    properties = {str(i): i for i in range(60_000)}
    answer = post(collector, {"batch": [track(properties=properties)]})
    assert answer.status_code == 413


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [
        ("0001-01-01T00:00:00+01:00", None),
        ("9999-12-31T23:59:59-01:00", None),
        ("0009-09-17T11:20:16+04:15", "8192-08-06T00:27:30-17:18"),
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
    ],
)
def test_dates_at_the_ends_of_the_calendar(
    collector: RunningCollector, timestamp: str, sent_at: str | None
) -> None:
    """Clock-skew correction must not overflow: found by schemathesis (a 500)."""
    event = track(timestamp=timestamp, **({"sentAt": sent_at} if sent_at else {}))
    answer = post(collector, {"batch": [event]})
    assert answer.status_code == 200
    result = answer.json()
    assert result["accepted"] + len(result["rejected"]) == 1
