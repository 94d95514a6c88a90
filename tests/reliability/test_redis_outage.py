"""Redis stopped mid-run under a collector with ``profile_store = "redis"``.

Guarantees (docs/collector.md, "Decisions"; docs/decisions.md, "Store outage"): ingestion goes
on (200, events on disk), decisions say ``unavailable`` (``GET /v1/decisions/{subject}`` and the
inline ``decisions`` of batch answers), the dedup window falls back to this process, and once
Redis is back decisions recover, including the events that arrived during the outage.

Redis is stopped with ``SHUTDOWN SAVE`` and started again on its dump, as a persistent Redis
restarts (a Redis without persistence also loses the shared dedup window: see
docs/reliability.md, "Limits").
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from helpers import WRITE_KEY, RedisProcess, basic_auth, ndjson_lines
from reliability_processes import CollectorProcess


def _event(name: str, mid: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": "ivy",
        "event": name,
        "messageId": mid,
        "properties": properties,
    }


BEFORE = [
    _event("Consent Updated", "c1", purposes={"analytics": True, "personalization": True}),
    _event("Product Viewed", "v0", product_id="p0", price=12),
]
# Three views and an add to cart: "high_intent", and the "purchase" stage, once applied.
DURING = [
    *(_event("Product Viewed", f"v{i}", product_id=f"p{i}", price=12) for i in (1, 2, 3)),
    _event("Product Added", "a1", product_id="p1", price=12, quantity=1),
]


def _post(url: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    answer = httpx.post(
        url + "/v1/batch", json={"batch": events}, headers=basic_auth(WRITE_KEY), timeout=30
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _decision(url: str) -> dict[str, Any]:
    answer = httpx.get(url + "/v1/decisions/ivy", headers=basic_auth(WRITE_KEY), timeout=30)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _wait_decision(url: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 60  # the store is retried every 5 s once it failed
    while not done(decision := _decision(url)):
        assert time.monotonic() < deadline, f"the decision did not get there: {decision}"
        time.sleep(0.2)
    return decision


def _collector(
    make: Callable[..., CollectorProcess], tmp_path: Path, redis: RedisProcess
) -> CollectorProcess:
    redis.start()
    env = {"JOURNEYKIT_PROFILE_STORE": "redis", "JOURNEYKIT_REDIS_URL": redis.url}
    collector = make(tmp_path / "data", env)
    collector.start()
    return collector


def test_ingestion_goes_on_without_redis_and_decisions_recover(
    tmp_path: Path,
    collector_process: Callable[..., CollectorProcess],
    redis_process: RedisProcess,
) -> None:
    collector = _collector(collector_process, tmp_path, redis_process)
    url = collector.url
    assert _post(url, BEFORE)["accepted"] == 2
    before = _wait_decision(url, lambda d: d["personalization"] == "granted")
    assert before["stage"] == "consideration"

    redis_process.stop(save=True)
    answer = _post(url, DURING)
    assert (answer["accepted"], answer["duplicates"]) == (4, 0)
    assert answer["decisions"]["ivy"]["personalization"] == "unavailable"
    assert _decision(url)["personalization"] == "unavailable"
    # The dedup window falls back to this process: a resend is still a duplicate.
    again = _post(url, DURING)
    assert (again["accepted"], again["duplicates"]) == (0, 4)
    stored = Counter(e["messageId"] for e in ndjson_lines(tmp_path / "data" / "events"))
    assert stored == Counter(e["messageId"] for e in BEFORE + DURING)

    redis_process.start()
    # The profile updates queued during the outage are written: the decision has them.
    after = _wait_decision(
        url, lambda d: d["personalization"] == "granted" and "high_intent" in d["segments"]
    )
    assert after["stage"] == "purchase"
    later = _post(url, [_event("Product Viewed", "v4", product_id="p4", price=12)])
    assert later["accepted"] == 1
    assert later["decisions"]["ivy"]["personalization"] == "granted"
    assert "Redis unavailable" in collector.log()


def test_a_resend_after_redis_returns_is_still_a_duplicate(
    tmp_path: Path,
    collector_process: Callable[..., CollectorProcess],
    redis_process: RedisProcess,
) -> None:
    """An SDK resends a batch whose answer it lost: stored during the outage, resent after."""
    collector = _collector(collector_process, tmp_path, redis_process)
    url = collector.url
    assert _post(url, BEFORE)["accepted"] == 2
    redis_process.stop(save=True)
    assert _post(url, DURING)["accepted"] == 4
    redis_process.start()
    _wait_decision(url, lambda d: d["personalization"] == "granted")

    resent = _post(url, BEFORE + DURING)
    assert (resent["accepted"], resent["duplicates"]) == (0, 6), (
        "events stored during the Redis outage were stored again when resent after it"
    )
    stored = Counter(e["messageId"] for e in ndjson_lines(tmp_path / "data" / "events"))
    assert max(stored.values()) == 1, [mid for mid, n in stored.items() if n > 1]
