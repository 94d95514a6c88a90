"""Where decisions are made: on the event loop with the embedded SQLite store (a local read,
brief), on threads of their own with Redis (a network round trip)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import running_collector


def _threads(name: str) -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == name}


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_only_a_remote_store_hands_decisions_to_threads(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    settings: dict[str, Any] = {"consent_regime": "opt_out"}
    if store == "redis":
        settings.update(profile_store="redis", redis_url=request.getfixturevalue("redis_url"))
    views = [
        {"type": "track", "userId": "rue", "event": "Product Viewed", "messageId": f"w-{i}",
         "properties": {"product_id": f"p{i}", "category": "tea", "price": 10}}
        for i in range(3)
    ]  # fmt: skip
    with running_collector(tmp_path / "data", **settings) as running:
        # Threads are compared before and after: other tests' collectors may have theirs.
        before = _threads("journeykit-inline")
        answer = httpx.post(
            f"{running.url}/v1/batch", json={"batch": views}, headers=running.auth()
        )
        inline = _threads("journeykit-inline") - before
        assert answer.status_code == 200, answer.text
        decision = answer.json()["decisions"]["rue"]
        # Decided either way, the batch's own views counted (no views: "awareness").
        assert (decision["personalization"], decision["stage"]) == ("granted", "consideration")
        assert bool(inline) == (store == "redis")
        before = _threads("journeykit-decisions")
        asked = httpx.get(f"{running.url}/v1/decisions/rue", headers=running.auth())
        on_demand = _threads("journeykit-decisions") - before
        assert asked.status_code == 200, asked.text
        assert asked.json() == decision  # the same answer, wherever it is made
        assert bool(on_demand) == (store == "redis")
