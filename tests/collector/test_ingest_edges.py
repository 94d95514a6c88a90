"""Inputs at the edges: deep nesting, times off the calendar, PII in rejected events, ``stored``."""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from helpers import RunningCollector, running_collector
from pydantic import SecretStr

from journeykit.collector.dedup import Deduplicator
from journeykit.collector.events import MAX_EVENT_DEPTH
from journeykit.collector.ingest import Envelope, Ingestor
from journeykit.collector.settings import CollectorSettings
from journeykit.collector.sink import NdjsonSink
from journeykit.consent.repair import repair_ledger


def nested(levels: int) -> str:
    """JSON text of ``levels`` objects nested in each other."""
    return '{"a":' * levels + "1" + "}" * levels


def post_raw(c: RunningCollector, events: list[str]) -> httpx.Response:
    body = '{"batch": [' + ",".join(events) + "]}"
    headers = {**c.auth(), "Content-Type": "application/json"}
    return httpx.post(c.url + "/v1/batch", content=body.encode(), headers=headers, timeout=30)


def test_too_deep_an_event_is_rejected_alone_and_kept_clipped(
    collector: RunningCollector,
) -> None:
    # The event object is one level, properties the rest: 255 levels in all, one too many.
    deep = '{"type":"track","userId":"u","event":"E","properties":%s}'
    answer = post_raw(
        collector,
        [deep % nested(MAX_EVENT_DEPTH), '{"type":"track","userId":"u","event":"Fine"}'],
    )
    result = answer.json()
    assert result["accepted"] == 1
    assert [e["type"] for r in result["rejected"] for e in r["errors"]] == ["nesting_too_deep"]
    [record] = collector.rejected
    assert record["clipped"] is True
    assert record["event"]["userId"] == "u"
    # Kept as deep as a record line can hold: 254 levels, the record itself included.
    depth, node = 3, record["event"]["properties"]  # the record, the event, properties
    while isinstance(node, dict):
        depth, node = depth + 1, node["a"]
    assert (node, depth) == ("…", MAX_EVENT_DEPTH + 1)


def test_an_event_just_deep_enough_is_stored(collector: RunningCollector) -> None:
    deep = '{"type":"track","userId":"u","event":"E","properties":%s}'
    answer = post_raw(collector, [deep % nested(MAX_EVENT_DEPTH - 1)])
    assert answer.json()["accepted"] == 1


def test_a_deep_invalid_event_is_kept_clipped(collector: RunningCollector) -> None:
    # Deep enough to be checked, one level too deep for its rejected record: no "event" name.
    deep = '{"type":"track","userId":"u","properties":%s}'
    answer = post_raw(collector, [deep % nested(MAX_EVENT_DEPTH - 1)])
    assert answer.json()["rejected"][0]["errors"][0]["path"] == "event"
    [record] = collector.rejected
    assert record["clipped"] is True


def test_times_off_the_calendar_fall_back_to_the_receive_time(
    collector: RunningCollector,
) -> None:
    events = [
        {
            "type": "track",
            "userId": "u",
            "event": "Year 0",
            "timestamp": "0001-01-01T00:00:00+01:00",
        },
        {
            "type": "track",
            "userId": "u",
            "event": "Far apart",
            "timestamp": "0001-01-01T00:00:00Z",
            "sentAt": "9999-12-31T23:59:59Z",
        },
    ]
    answer = httpx.post(
        collector.url + "/v1/batch", json={"batch": events}, headers=collector.auth()
    )
    assert answer.json()["accepted"] == 2
    by_name = {e["event"]: e for e in collector.events}
    for event in by_name.values():
        assert event["timestamp"] == event["receivedAt"]
    # The client's own times are kept: in UTC when it can say them, else with their offset.
    assert by_name["Year 0"]["originalTimestamp"] == "0001-01-01T00:00:00.000+01:00"
    assert by_name["Far apart"]["originalTimestamp"] == "0001-01-01T00:00:00.000Z"
    assert by_name["Far apart"]["sentAt"] == "9999-12-31T23:59:59.000Z"


def test_rejected_events_are_pseudonymized_and_removals_noted(
    collector: RunningCollector,
) -> None:
    bad = {
        "type": "track",
        "userId": "u",
        "properties": {"email": "Jane@Example.com", "phone": {"not": "a string"}},
        "context": {"ip": "203.0.113.9"},
    }
    answer = httpx.post(
        collector.url + "/v1/batch", json={"batch": [bad]}, headers=collector.auth()
    )
    assert len(answer.json()["rejected"]) == 1
    [record] = collector.rejected
    properties = record["event"]["properties"]
    assert properties["email"].startswith("hmac-sha256:")
    assert "phone" not in properties
    assert record["removed"] == [{"path": "properties.phone", "reason": "not_a_string"}]
    assert record["event"]["context"]["ip"] == "203.0.113.0"


def test_stored_holds_the_events_as_written(tmp_path: Path) -> None:
    settings = CollectorSettings(data_dir=tmp_path, write_keys=(SecretStr("k"),))
    events = NdjsonSink(tmp_path / "events", fsync="never")
    rejected = NdjsonSink(tmp_path / "rejected", fsync="never")
    ingestor = Ingestor(settings, events, rejected, Deduplicator(60, 1_000))
    batch = [
        {"type": "track", "messageId": "m1", "userId": 7, "event": "E"},
        {"type": "track", "messageId": "m1", "userId": "7", "event": "E"},  # a duplicate
        {"type": "track", "userId": "u"},  # invalid
    ]
    result = ingestor.ingest(Envelope(batch), datetime.now(UTC))
    events.close()
    rejected.close()
    assert [(e["messageId"], e["userId"]) for e in result.stored] == [("m1", "7")]
    assert "stored" not in result.as_json()
    [line] = (tmp_path / "events").rglob("*.ndjson")
    assert line.read_text().count("\n") == 1


def test_an_unknown_consent_purpose_rejects_that_event_not_the_request(
    collector: RunningCollector,
) -> None:
    consent = (
        '{"type":"track","userId":"u","event":"Consent Updated",'
        '"properties":{"purposes":{"ads":true}}}'
    )
    answer = post_raw(collector, [consent, '{"type":"track","userId":"u","event":"Fine"}'])
    assert answer.status_code == 200
    result = answer.json()
    [rejected] = result["rejected"]
    assert rejected["index"] == 0
    assert [(e["type"], e["path"]) for e in rejected["errors"]] == [
        ("invalid_consent", "properties.purposes.ads")
    ]
    assert len(collector.rejected) == 1


def test_a_client_hanging_up_mid_body_is_not_a_collector_failure(
    collector: RunningCollector, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = collector.url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: {collector.auth()['Authorization']}"
        "\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    with caplog.at_level(logging.ERROR, logger="journeykit.collector"):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head.encode() + b'{"batch":[')
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while 'status="499"' not in (metrics := httpx.get(collector.url + "/metrics").text):
            assert time.monotonic() < deadline, "the hang-up was never counted"
            time.sleep(0.05)
    assert 'journeykit_requests_total{status="500"}' not in metrics
    assert [r.getMessage() for r in caplog.records] == []
    assert collector.events == []


def test_a_torn_consent_ledger_refuses_consent_with_503_and_keeps_nothing(
    tmp_path: Path,
) -> None:
    consent = {
        "type": "track",
        "userId": "u2",
        "event": "Consent Updated",
        "messageId": "c-u2",
        "properties": {"purposes": {"analytics": True}},
    }
    page = {"type": "page", "userId": "u2", "name": "Home", "messageId": "p-u2"}
    with running_collector(tmp_path / "data", consent_regime="opt_in") as running:
        ledger = running.data_dir / "consent" / "ledger.ndjson"
        ledger.parent.mkdir(parents=True, exist_ok=True)
        with ledger.open("ab") as handle:
            handle.write(b'{"seq":1,"subject":"hmac-sha')  # another writer killed mid-append

        def post(event: dict[str, object]) -> httpx.Response:
            body = {"batch": [event]}
            return httpx.post(running.url + "/v1/batch", json=body, headers=running.auth())

        refused = post(consent)
        assert (refused.status_code, refused.json()["error"]["code"]) == (
            503,
            "storage_unavailable",
        )
        assert httpx.get(running.url + "/readyz").status_code == 503
        # The change was undone in memory: the person's events are still without consent.
        assert post(page).json()["dropped"] == {"no_consent": 1}
        assert repair_ledger(ledger).repaired
        assert httpx.get(running.url + "/readyz").status_code == 200
        assert post(consent).json()["accepted"] == 1
        assert post(dict(page, messageId="p-u2-again")).json()["accepted"] == 1


def test_keep_stored_false_holds_no_event_objects_but_stores_the_same(tmp_path: Path) -> None:
    settings = CollectorSettings(data_dir=tmp_path, write_keys=(SecretStr("k"),))
    batch = [
        {"type": "track", "messageId": "m1", "userId": "u", "event": "E"},
        {"type": "track", "messageId": "m2", "anonymousId": "a", "event": "F"},
    ]
    written = []
    for keep in (True, False):
        root = tmp_path / str(keep)
        events = NdjsonSink(root / "events", fsync="never")
        rejected = NdjsonSink(root / "rejected", fsync="never")
        ingestor = Ingestor(settings, events, rejected, Deduplicator(60, 1_000), keep_stored=keep)
        prepared = ingestor.prepare(Envelope([dict(e) for e in batch]), datetime.now(UTC))
        # What waits for the disk: bytes and ids only, the events' dicts already free.
        assert (prepared.kept == []) is not keep
        result = ingestor.commit(prepared)
        events.close()
        rejected.close()
        assert result.accepted == 2
        assert (result.stored == []) is not keep
        [path] = (root / "events").rglob("*.ndjson")
        lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        written.append(
            [{k: v for k, v in e.items() if not k.endswith(("At", "imestamp"))} for e in lines]
        )
    assert [e["messageId"] for e in written[0]] == ["m1", "m2"]
    assert written[0] == written[1]
