"""What other Segment- and RudderStack-compatible clients send, as they send it, over real HTTP.

Each case is a payload or a request shape a real client library produces; before the fix each
was a 404, a rejection, a refused preflight, a 400 for the whole batch, or a field lost.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import RunningCollector, running_collector

from journeykit.collector.ingest_paths import BATCH_ALIASES, SINGLE_ALIASES
from journeykit.consent.history import iter_records
from journeykit.consent.records import LedgerRecord

SHOP = "https://shop.example"


def post(
    c: RunningCollector,
    path: str,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    auth: bool = True,
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    all_headers = {
        "Content-Type": "application/json",
        **(c.auth() if auth else {}),
        **(headers or {}),
    }
    return httpx.post(c.url + path, content=content, headers=all_headers, timeout=10)


def consent_records(c: RunningCollector) -> list[LedgerRecord]:
    path = c.data_dir / "consent" / "ledger.ndjson"
    if not path.exists():
        return []
    return [r for r in iter_records(path) if r.kind == "consent"]


def track(mid: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": "E", "messageId": mid, **extra}


@pytest.mark.parametrize("path", sorted(BATCH_ALIASES))
def test_other_clients_batch_paths_store_the_batch(collector: RunningCollector, path: str) -> None:
    # /v1/import: analytics-ruby, -java, -android; /v1/b: analytics-swift, -kotlin, AJS batching
    answer = post(collector, path, {"batch": [track("m1"), track("m2")]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 2
    assert sorted(e["messageId"] for e in collector.events) == ["m1", "m2"]


def test_analytics_js_standard_delivery_paths_store_one_message_each(
    collector: RunningCollector,
) -> None:
    # analytics.js posts each message to /v1/<first letter of its type>, text/plain, with the
    # write key in the body.
    bodies = {
        "track": {"event": "Clicked"},
        "identify": {"traits": {"plan": "pro"}},
        "page": {"name": "Home"},
        "screen": {"name": "Home"},
        "group": {"groupId": "g1"},
        "alias": {"previousId": "old"},
    }
    for path, kind in SINGLE_ALIASES.items():
        body = {
            "type": kind,
            "userId": "u1",
            "messageId": f"m-{kind}",
            "writeKey": collector.key,
            **bodies[kind],
        }
        answer = post(collector, path, body, headers={"Content-Type": "text/plain"}, auth=False)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json()["accepted"] == 1, (path, answer.text)
    stored = {e["messageId"]: e["type"] for e in collector.events}
    assert stored == {f"m-{kind}": kind for kind in bodies}
    # A message of another type on a type's path is rejected, as on /v1/<type>.
    wrong = post(collector, "/v1/t", {"type": "page", "userId": "u1", "name": "Home"})
    assert [e["type"] for e in wrong.json()["rejected"][0]["errors"]] == ["type_mismatch"]


def test_rudderstack_beacon_takes_the_write_key_from_the_query(
    collector: RunningCollector,
) -> None:
    body = {"batch": [track("b1")]}
    plain = {"Content-Type": "text/plain;charset=UTF-8"}
    ok = post(
        collector, f"/beacon/v1/batch?writeKey={collector.key}", body, headers=plain, auth=False
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["accepted"] == 1
    wrong = post(collector, "/beacon/v1/batch?writeKey=nope", body, headers=plain, auth=False)
    assert wrong.status_code == 401
    missing = post(collector, "/beacon/v1/batch", body, headers=plain, auth=False)
    assert missing.status_code == 401
    # Only the beacon path reads the query: elsewhere a key belongs in a header or the body.
    elsewhere = post(
        collector, f"/v1/batch?writeKey={collector.key}", body, headers=plain, auth=False
    )
    assert elsewhere.status_code == 401
    assert [e["messageId"] for e in collector.events] == ["b1"]


def test_cors_preflight_allows_the_headers_rudderstack_sends(tmp_path: Path) -> None:
    preflight = {
        "Origin": SHOP,
        "Access-Control-Request-Method": "POST",
        # rudder-sdk-js v3's XhrQueue: AnonymousId (base64), Basic auth, JSON
        "Access-Control-Request-Headers": "anonymousid, authorization, content-type",
    }
    with running_collector(tmp_path / "data", cors_origins=(SHOP,)) as c:
        for path in ("/v1/track", "/v1/batch", "/beacon/v1/batch"):
            answer = httpx.options(c.url + path, headers=preflight)
            assert answer.status_code == 200, (path, answer.text)
            assert answer.headers["access-control-allow-origin"] == SHOP
            assert "anonymousid" in answer.headers["access-control-allow-headers"].lower()
        # Still only for the listed origins.
        other = httpx.options(
            c.url + "/v1/track", headers={**preflight, "Origin": "https://x.example"}
        )
        assert "access-control-allow-origin" not in other.headers


def test_an_empty_user_id_beside_an_anonymous_id_is_no_user_id(collector: RunningCollector) -> None:
    # rudder-sdk-js v3 sends "userId": "" for every visitor not identified yet.
    batch = [
        {"type": "track", "event": "E", "messageId": "m1", "userId": "", "anonymousId": "a1"},
        {"type": "page", "name": "Home", "messageId": "m2", "userId": "u2", "anonymousId": ""},
        # the unusual path (a property pydantic must check) treats it the same
        {"type": "identify", "messageId": "m3", "userId": "", "anonymousId": "a3", "traits": []},
        {"type": "track", "event": "E", "messageId": "m4", "userId": "", "anonymousId": ""},
    ]
    answer = post(collector, "/v1/batch", {"batch": batch}).json()
    assert answer["accepted"] == 2
    rejected = {r["messageId"]: [e["path"] for e in r["errors"]] for r in answer["rejected"]}
    assert rejected["m3"] == ["traits"]  # for its traits, not its empty userId
    assert "m4" in rejected  # no id at all: rejected as before
    stored = {e["messageId"]: e for e in collector.events}
    assert "userId" not in stored["m1"]
    assert stored["m1"]["anonymousId"] == "a1"
    assert "anonymousId" not in stored["m2"]


def test_a_lone_surrogate_escape_is_read_as_a_replacement_character(
    collector: RunningCollector,
) -> None:
    # JSON.stringify of a title cut in the middle of an emoji: valid JSON naming no character.
    body = (
        b'{"batch":[{"type":"track","userId":"u1","event":"E","messageId":"m1",'
        b'"properties":{"title":"Sale \\ud83c","ok":"\\ud83c\\udf89"}},'
        b'{"type":"track","userId":"u1","event":"E","messageId":"m2"}]}'
    )
    answer = post(collector, "/v1/batch", body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 2
    stored = {e["messageId"]: e for e in collector.events}
    assert stored["m1"]["properties"] == {"title": "Sale \ufffd", "ok": "\U0001f389"}
    metrics = httpx.get(collector.url + "/metrics").text
    assert "journeykit_lone_surrogates_replaced_total 1.0" in metrics
    # Anything else wrong with the body is still a 400 for the body.
    for bad in (body[:-1], body.replace(b'"m2"}', b'"m2","n":NaN}')):
        refused = post(collector, "/v1/batch", bad)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "malformed_json"


def test_the_batch_integrations_apply_to_every_message(collector: RunningCollector) -> None:
    body = {
        "batch": [track("m1"), track("m2", integrations={"Mixpanel": False, "Amplitude": True})],
        "integrations": {"All": False, "Mixpanel": True},
    }
    answer = post(collector, "/v1/batch", body)
    assert answer.json()["accepted"] == 2
    stored = {e["messageId"]: e["integrations"] for e in collector.events}
    assert stored == {
        "m1": {"All": False, "Mixpanel": True},
        "m2": {"All": False, "Mixpanel": False, "Amplitude": True},  # the message's own wins
    }
    refused = post(collector, "/v1/batch", {"batch": [track("m3")], "integrations": []})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_envelope"


def test_rudderstack_sdk_consent_object_without_a_manager_is_no_refusal(
    collector: RunningCollector,
) -> None:
    # rudder-sdk-js v3 adds this to every event, consent manager configured or not.
    event = track("m1", context={"consentManagement": {"deniedConsentIds": []}})
    answer = post(collector, "/v1/batch", {"batch": [event]}).json()
    assert answer["accepted"] == 1, answer
    assert consent_records(collector) == []
    # A OneTrust visitor who declined marketing only: marketing denied, analytics untouched.
    declined = track(
        "m2",
        userId="u2",
        context={"consentManagement": {"provider": "oneTrust", "deniedConsentIds": ["C0004"]}},
    )
    answer = post(collector, "/v1/batch", {"batch": [declined]}).json()
    assert answer["accepted"] == 1, answer
    [record] = consent_records(collector)
    assert (record.granted, record.denied) == ((), ("marketing",))


def test_surrogate_bodies_wrong_in_another_way_are_400_not_500(
    collector: RunningCollector,
) -> None:
    lone = b'{"type":"track","userId":"u1","event":"Sale \\ud83c"'
    for body in (
        # a number orjson refuses beside the lone surrogate (was a 500, before any key check)
        b'{"batch":[' + lone + b',"n":' + b"9" * 400 + b"}]}",
        b'{"batch":[' + lone + b',"n":NaN}]}',
        # not UTF-8: UTF-16, and raw surrogate bytes (CESU-8) instead of an escape
        '{"batch":[{"type":"track","userId":"u1","event":"Sale \\ud83c"}]}'.encode("utf-16"),
        b'{"batch":[{"type":"track","userId":"u1","event":"Sale \xed\xa0\xbc"}]}',
    ):
        for auth in (True, False):
            answer = post(collector, "/v1/batch", body, auth=auth)
            assert answer.status_code == 400, (body[:40], answer.text)
            assert answer.json()["error"]["code"] == "malformed_json"
    assert collector.events == []


def test_batch_fields_copied_into_every_message_are_bounded(collector: RunningCollector) -> None:
    # 60 KB of batch integrations in a small gzip body of 2,500 messages wrote 150 MB.
    big = {f"Destination{i}": {"setting": "x" * 200} for i in range(300)}
    body = {"batch": [{"type": "track", "userId": "u", "event": "E"}] * 2500, "integrations": big}
    answer = post(collector, "/v1/batch", body)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "shared_fields_too_large"
    context = {"batch": [track("m1")] * 10, "context": {"deep": json.loads("[" * 300 + "]" * 300)}}
    assert post(collector, "/v1/batch", context).json()["error"]["code"] == "invalid_envelope"
    small = {"batch": [track(f"m{i}") for i in range(100)], "integrations": {"All": False}}
    assert post(collector, "/v1/batch", small).json()["accepted"] == 100
    assert len(collector.events) == 100
    assert collector.rejected == []
