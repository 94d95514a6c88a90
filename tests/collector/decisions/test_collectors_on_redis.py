"""Two collector processes on one Redis: the same decisions, and one dedup window."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from helpers import WRITE_KEY, basic_auth, serve


def batch(user: str, ids: range) -> list[dict[str, Any]]:
    consent = {
        "type": "track",
        "userId": user,
        "event": "Consent Updated",
        "messageId": f"{user}-consent",
        "properties": {"purposes": {"analytics": True, "personalization": True}},
    }
    views = [
        {
            "type": "track",
            "userId": user,
            "event": "Product Viewed",
            "messageId": f"{user}-{i}",
            "properties": {"product_id": f"p{i}", "category": "tea", "price": 12},
        }
        for i in ids
    ]
    return [consent, *views]


def post(url: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    answer = httpx.post(f"{url}/v1/batch", json={"batch": events}, headers=basic_auth(WRITE_KEY))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_two_collectors_share_profiles_and_dedup(tmp_path: Path, redis_url: str) -> None:
    env = {
        "JOURNEYKIT_WRITE_KEYS": WRITE_KEY,
        "JOURNEYKIT_PROFILE_STORE": "redis",
        "JOURNEYKIT_REDIS_URL": redis_url,
        "JOURNEYKIT_CONSENT_REGIME": "opt_out",
    }
    with (
        serve(tmp_path / "a", env=env) as (first, _),
        serve(tmp_path / "b", env=env) as (second, _),
    ):
        assert post(first, batch("ivy", range(4)))["accepted"] == 5
        # The same batch again, to the other collector: every event is a duplicate.
        again = post(second, batch("ivy", range(4)))
        assert (again["accepted"], again["duplicates"]) == (0, 5)
        # Both answer the same decision once the first has written its profile updates.
        deadline = time.monotonic() + 15
        while True:
            got = [
                httpx.get(f"{url}/v1/decisions/ivy", headers=basic_auth(WRITE_KEY)).json()
                for url in (first, second)
            ]
            if got[0] == got[1] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert got[0] == got[1]
        assert got[0]["personalization"] == "granted"
        assert got[0]["stage"] == "consideration"
