"""Where a batch's inline decision is made: on the event loop with the embedded SQLite store
(a local read, brief), on the decision thread with Redis (a network round trip)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import running_collector


def _decision_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "journeykit-inline"}


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_only_a_remote_store_hands_the_batchs_decision_to_a_thread(
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
        before = _decision_threads()
        answer = httpx.post(
            f"{running.url}/v1/batch", json={"batch": views}, headers=running.auth()
        )
        started = _decision_threads() - before  # threads of other tests' collectors left out
        assert answer.status_code == 200, answer.text
        decision = answer.json()["decisions"]["rue"]
        # Decided either way, the batch's own views counted (no views: "awareness").
        assert (decision["personalization"], decision["stage"]) == ("granted", "consideration")
        assert bool(started) == (store == "redis")
