"""The collector over real HTTP: status codes, per-event answers and what lands on disk."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import WIRE, RunningCollector, basic_auth, load_json, running_collector

from journeykit.sdk.protocol import MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_REQUEST_BYTES

JSON = {"Content-Type": "application/json"}


def post(
    running: RunningCollector,
    body: Any,
    *,
    path: str = "/v1/batch",
    headers: dict[str, str] | None = None,
    auth: bool = True,
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    all_headers = {**JSON, **(running.auth() if auth else {}), **(headers or {})}
    return httpx.post(running.url + path, content=content, headers=all_headers, timeout=10)


def track(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": "E", "messageId": f"m-{i}", **extra}


def test_segment_docs_batch_lands_one_line_per_event(collector: RunningCollector) -> None:
    body = load_json(WIRE / "batches" / "segment_http_api_docs.json")
    response = post(collector, body)
    assert response.status_code == 200
    answer = response.json()
    decisions = answer.pop("decisions")
    assert answer == {
        "ok": True,
        "accepted": 4,
        "duplicates": 0,
        "dropped": {},
        "suppressed": 0,
        "rejected": [],
    }
    events = collector.events
    # Opt-out: the batch's first person may be personalized, and the decision comes back.
    first = events[0].get("userId") or events[0].get("anonymousId")
    assert list(decisions) == [first]
    assert decisions[first]["personalization"] == "granted"
    assert [e["type"] for e in events] == ["identify", "track", "identify", "track"]
    # Batch-level context is merged into each event; ids and receive time are added.
    assert all(e["context"]["device"]["name"] == "Apple iPhone 6" for e in events)
    assert all(e["messageId"].startswith("jk-") and e["receivedAt"] for e in events)
    assert events[1]["originalTimestamp"] == "2012-12-02T00:30:14.984Z"


def test_analytics_python_payload_is_accepted_unchanged(collector: RunningCollector) -> None:
    body = load_json(WIRE / "batches" / "segment_analytics_python.json")
    body["writeKey"] = collector.key
    response = post(collector, body)
    assert response.status_code == 200
    assert response.json()["accepted"] == len(body["batch"])
    stored = collector.events
    assert [e["messageId"] for e in stored] == [m["messageId"] for m in body["batch"]]
    assert all("writeKey" not in e for e in stored)  # a key never reaches the event store


def test_partition_layout(collector: RunningCollector) -> None:
    post(collector, {"batch": [track()]})
    files = list((collector.data_dir / "events").rglob("*.ndjson"))
    assert len(files) == 1
    dt, hr = files[0].parent.parent.name, files[0].parent.name
    assert dt.startswith("dt=")
    assert hr.startswith("hr=")


def test_clock_skew_is_corrected(collector: RunningCollector) -> None:
    body = {"batch": [track(timestamp="2000-01-01T00:00:00Z")], "sentAt": "2000-01-01T00:00:10Z"}
    post(collector, body)
    event = collector.events[0]
    assert event["originalTimestamp"] == "2000-01-01T00:00:00.000Z"
    assert event["sentAt"] == "2000-01-01T00:00:10.000Z"
    # Ten seconds before the server received it, on the server's clock.
    from datetime import datetime

    received = datetime.fromisoformat(event["receivedAt"])
    corrected = datetime.fromisoformat(event["timestamp"])
    assert (received - corrected).total_seconds() == pytest.approx(10, abs=0.002)


# -- authentication --------------------------------------------------------------------------


def test_wrong_key_is_401(collector: RunningCollector) -> None:
    response = post(collector, {"batch": [track()]}, auth=False, headers=basic_auth("wrong"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert collector.events == []


def test_missing_key_is_401(collector: RunningCollector) -> None:
    assert post(collector, {"batch": [track()]}, auth=False).status_code == 401


def test_garbled_authorization_header_is_401(collector: RunningCollector) -> None:
    headers = {"Authorization": "Basic %%%not-base64"}
    assert post(collector, {"batch": []}, auth=False, headers=headers).status_code == 401


def test_key_in_body_is_accepted_as_segment_allows(collector: RunningCollector) -> None:
    response = post(collector, {"batch": [track()], "writeKey": collector.key}, auth=False)
    assert response.status_code == 200
    wrong = post(collector, {"batch": [track(1)], "writeKey": "nope"}, auth=False)
    assert wrong.status_code == 401
    assert len(collector.events) == 1


# -- malformed and oversized -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "malformed_json"),
        (b"", "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"events": []}', "not_a_batch"),
        (b'{"batch": {}}', "not_a_batch"),
        (b'{"batch": [], "sentAt": "soon"}', "invalid_envelope"),
    ],
)
def test_malformed_bodies_are_400(collector: RunningCollector, body: bytes, code: str) -> None:
    response = post(collector, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/html", ""])
def test_wrong_content_type_is_415(collector: RunningCollector, content_type: str) -> None:
    response = post(collector, {"batch": [track()]}, headers={"Content-Type": content_type})
    assert response.status_code == 415


def test_text_plain_is_accepted_for_beacons(collector: RunningCollector) -> None:
    response = post(collector, {"batch": [track()]}, headers={"Content-Type": "text/plain"})
    assert response.status_code == 200


def test_body_over_the_limit_is_413_even_without_content_length(
    collector: RunningCollector,
) -> None:
    big = b'{"batch": [' + b" " * MAX_REQUEST_BYTES + b"]}"
    assert post(collector, big).status_code == 413

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to refuse early
        for _ in range(MAX_REQUEST_BYTES // 1024 + 2):
            yield b" " * 1024

    response = httpx.post(
        collector.url + "/v1/batch",
        content=chunks(),
        headers={**JSON, **collector.auth()},
        timeout=10,
    )
    assert response.status_code == 413


def test_gzip_body_is_inflated(collector: RunningCollector) -> None:
    body = gzip.compress(json.dumps({"batch": [track(), track(1)]}).encode())
    response = post(collector, body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.json()["accepted"] == 2


def test_gzip_bomb_is_413_not_memory(collector: RunningCollector) -> None:
    # 50 MB of zeros compress to about 50 KB: under the body limit, far over once inflated.
    bomb = gzip.compress(b'{"batch": [' + b" " * 50_000_000 + b"]}", compresslevel=9)
    assert len(bomb) < MAX_REQUEST_BYTES
    response = post(collector, bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_broken_gzip_is_400_and_unknown_encoding_415(collector: RunningCollector) -> None:
    assert post(collector, b"not gzip", headers={"Content-Encoding": "gzip"}).status_code == 400
    truncated = gzip.compress(json.dumps({"batch": [track()]}).encode())[:-12]
    assert post(collector, truncated, headers={"Content-Encoding": "gzip"}).status_code == 400
    assert post(collector, b"{}", headers={"Content-Encoding": "br"}).status_code == 415


def test_deflate_is_supported(collector: RunningCollector) -> None:
    body = zlib.compress(json.dumps({"batch": [track()]}).encode())
    assert post(collector, body, headers={"Content-Encoding": "deflate"}).status_code == 200


# -- per-event answers --------------------------------------------------------------------------


def test_invalid_events_are_rejected_one_by_one_and_kept(collector: RunningCollector) -> None:
    body = {
        "batch": [
            track(0),
            {"type": "track", "event": "no-id"},
            "nonsense",
            track(3, properties=[1]),
        ]
    }
    answer = post(collector, body).json()
    assert answer["accepted"] == 1
    # In batch order, though "nonsense" fails before validation and the others in it.
    assert [r["index"] for r in answer["rejected"]] == [1, 2, 3]
    rejected = {r["index"]: r for r in answer["rejected"]}
    assert rejected[1]["errors"][0]["path"] == "userId"
    assert rejected[2]["errors"][0]["type"] == "not_an_object"
    assert rejected[3]["messageId"] == "m-3"
    assert rejected[3]["errors"][0]["path"] == "properties"
    kept = collector.rejected
    assert [r["index"] for r in kept] == [1, 2, 3]
    assert kept[1]["event"] == "nonsense"
    assert kept[2]["errors"][0]["type"] == "dict_type"


def test_oversized_event_is_rejected_alone(collector: RunningCollector) -> None:
    body = {"batch": [track(0), track(1, properties={"blob": "x" * MAX_EVENT_BYTES})]}
    answer = post(collector, body).json()
    assert answer["accepted"] == 1
    assert answer["rejected"][0]["errors"][0]["type"] == "event_too_large"


def test_events_past_the_batch_limit_are_rejected(collector: RunningCollector) -> None:
    body = {"batch": [track(i) for i in range(MAX_BATCH_EVENTS + 3)]}
    answer = post(collector, body).json()
    assert answer["accepted"] == MAX_BATCH_EVENTS
    assert [r["index"] for r in answer["rejected"]] == [2500, 2501, 2502]
    assert {r["errors"][0]["type"] for r in answer["rejected"]} == {"batch_too_large"}
    assert len(collector.events) == MAX_BATCH_EVENTS


def test_resent_messages_are_counted_as_duplicates(collector: RunningCollector) -> None:
    body = {"batch": [track(0), track(1), track(1)]}
    first = post(collector, body).json()
    assert (first["accepted"], first["duplicates"]) == (2, 1)
    again = post(collector, body).json()
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    assert [e["messageId"] for e in collector.events] == ["m-0", "m-1"]


SINGLE = {
    "track": {"userId": "u1", "event": "Product Viewed"},
    "identify": {"userId": "u1", "traits": {"plan": "pro"}},
    "page": {"anonymousId": "a1", "name": "Home"},
    "screen": {"userId": "u1", "name": "Cart"},
    "group": {"userId": "u1", "groupId": "g1"},
    "alias": {"userId": "u1", "previousId": "a1"},
}


@pytest.mark.parametrize("kind", sorted(SINGLE))
def test_single_event_endpoints_need_no_type_field(collector: RunningCollector, kind: str) -> None:
    answer = post(collector, SINGLE[kind], path=f"/v1/{kind}").json()
    assert answer["accepted"] == 1, answer
    assert collector.events[0]["type"] == kind


def test_single_endpoint_refuses_a_mismatched_type(collector: RunningCollector) -> None:
    answer = post(collector, track(), path="/v1/identify").json()
    assert answer["accepted"] == 0
    assert answer["rejected"][0]["errors"][0]["type"] == "type_mismatch"


# -- storage failure and health -----------------------------------------------------------------


def test_unwritable_storage_is_503_with_retry_after(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "events").write_text("a file where a directory should be")
    with running_collector(data_dir) as running:
        response = post(running, {"batch": [track()]})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert "Traceback" not in response.text
        # Nothing was remembered: once storage works, the same batch is stored, not a duplicate.
        (data_dir / "events").unlink()
        retry = post(running, {"batch": [track()]}).json()
        assert (retry["accepted"], retry["duplicates"]) == (1, 0)


def test_an_unwritable_rejected_dir_stores_nothing_of_the_batch(tmp_path: Path) -> None:
    # The events' write came first: they were on disk, their ids remembered, and the client
    # told 503; its retry was then answered "duplicate", the events counted nowhere.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "rejected").write_text("a file where a directory should be")
    batch = {"batch": [track(1), {"type": "bogus", "messageId": "bad-1"}]}
    with running_collector(data_dir) as running:
        assert post(running, batch).status_code == 503
        assert running.events == []
        (data_dir / "rejected").unlink()
        retry = post(running, batch).json()
        assert (retry["accepted"], retry["duplicates"], len(retry["rejected"])) == (1, 0, 1)
        assert [e["messageId"] for e in running.events] == ["m-1"]
        assert [r["messageId"] for r in running.rejected] == ["bad-1"]


def test_health_and_readiness(collector: RunningCollector) -> None:
    assert httpx.get(collector.url + "/healthz").json() == {"ok": True}
    assert httpx.get(collector.url + "/readyz").status_code == 200


def test_unknown_paths_and_methods(collector: RunningCollector) -> None:
    # Answered in the collector's JSON as every other refusal (Starlette's were plain text).
    wrong_method = httpx.get(collector.url + "/v1/batch")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert wrong_method.headers["allow"] == "POST"
    no_path = httpx.post(collector.url + "/v2/batch")
    assert no_path.status_code == 404
    assert no_path.json() == {
        "ok": False,
        "error": {"code": "not_found", "message": "no endpoint at this path"},
    }


def test_a_batch_of_over_twice_the_limit_is_refused_whole(collector: RunningCollector) -> None:
    # 500 KB of zeros would otherwise cost 250,000 rejections: a 30 MB answer, 40 MB on disk.
    body = b'{"batch":[' + b",".join([b"0"] * (2 * MAX_BATCH_EVENTS + 1)) + b"]}"
    answer = post(collector, body)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_many_events"
    assert (collector.events, collector.rejected) == ([], [])
    at_ceiling = {"batch": [track(i) for i in range(2 * MAX_BATCH_EVENTS)]}
    kept = post(collector, at_ceiling).json()
    assert (kept["accepted"], len(kept["rejected"])) == (MAX_BATCH_EVENTS, MAX_BATCH_EVENTS)


def test_numeric_ids_past_64_bits_are_rejected_not_rounded(collector: RunningCollector) -> None:
    # Parsed as floats, the two would be stored as one rounded id: one person, one message.
    big = 12345678901234567890001
    body = b'{"batch":[%s]}' % b",".join(
        b'{"type":"track","event":"E","userId":%d,"messageId":%d}' % (big + i, big + i)
        for i in range(2)
    )
    answer = post(collector, body).json()
    assert answer["accepted"] == 0
    errors = [{(e["path"], e["type"]) for e in r["errors"]} for r in answer["rejected"]]
    assert errors == [{("userId", "id_type"), ("messageId", "id_type")}] * 2
    kept = post(collector, {"batch": [{"type": "track", "event": "E", "userId": 42}]}).json()
    assert kept["accepted"] == 1, kept["rejected"]
    assert collector.events[0]["userId"] == "42"
