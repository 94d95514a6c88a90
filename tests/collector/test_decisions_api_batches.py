"""GET /v1/decisions decides concurrent requests in batches (on the event loop with SQLite, on
a worker thread with Redis): each answer stays its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import RunningCollector, running_collector

from journeykit.collector.decisions_api import DecisionBatches
from journeykit.sdk._decision import Decision


@pytest.fixture
def opt_out(tmp_path: Path) -> Iterator[RunningCollector]:
    with running_collector(tmp_path / "data", consent_regime="opt_out") as running:
        yield running


def _event(user: str, n: int) -> dict[str, Any]:
    props = {"product_id": f"p{n}", "category": "tea", "price": 10}
    return {"type": "track", "userId": user, "event": "Product Viewed", "properties": props}


def test_concurrent_requests_each_get_their_own_subjects_decision(
    opt_out: RunningCollector,
) -> None:
    batch = [{**_event(f"u{n}", n), "messageId": f"b-{n}"} for n in range(40)]
    sent = httpx.post(f"{opt_out.url}/v1/batch", json={"batch": batch}, headers=opt_out.auth())
    assert sent.status_code == 200, sent.text

    async def ask_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(base_url=opt_out.url, limits=limits) as client:
            asks = [
                client.get(f"/v1/decisions/u{n % 40}", headers=opt_out.auth()) for n in range(200)
            ]
            return await asyncio.gather(*asks)

    answers = asyncio.run(ask_all())
    assert [a.status_code for a in answers] == [200] * 200
    assert [a.json()["subject"] for a in answers] == [f"u{n % 40}" for n in range(200)]
    assert {a.json()["personalization"] for a in answers} == {"granted"}
    # The subject's own profile answered (its one category), not a neighbour's.
    assert {a.json()["stage"] for a in answers} == {"consideration"}


def test_a_failing_decision_fails_its_request_only_and_batches_wait_their_turn() -> None:
    release = threading.Event()
    calls: list[str] = []

    def decide(subject: str) -> Decision:
        calls.append(subject)
        if subject == "first":
            release.wait(10)
        if subject == "bad":
            raise ValueError("no decision for you")
        return Decision.empty(subject, "not_consented")

    async def scenario() -> list[Decision | BaseException]:
        batches = DecisionBatches(decide, concurrency=1)
        first = asyncio.ensure_future(batches.decide("first"))
        while not calls:  # the first batch is running (and blocked)
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(batches.decide(s)) for s in ("a", "bad", "b")]
        await asyncio.sleep(0.05)
        assert calls == ["first"]  # one batch at a time: the others wait for it
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    first, a, bad, b = asyncio.run(scenario())
    assert calls == ["first", "a", "bad", "b"]
    assert isinstance(bad, ValueError)
    answered = [d.subject if isinstance(d, Decision) else d for d in (first, a, b)]
    assert answered == ["first", "a", "b"]


def test_a_hand_over_serves_the_event_loop_it_is_bound_to_only() -> None:
    batches = DecisionBatches(lambda subject: Decision.empty(subject, "not_consented"))

    async def use() -> tuple[bool, Decision, bool]:
        before = batches.usable_here()  # unbound: any loop may take it
        decided = await batches.decide("a")
        return before, decided, batches.usable_here()

    before, decided, after = asyncio.run(use())
    assert (before, decided.subject, after) == (True, "a", True)

    async def elsewhere() -> bool:
        return batches.usable_here()

    assert asyncio.run(elsewhere()) is False  # another loop needs a hand-over of its own
