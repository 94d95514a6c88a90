"""client.decide(): the collector's decision, cached briefly, never an exception for the app."""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
from typing import Any

import httpx
import pytest
from helpers import WRITE_KEY, in_forked_child

import journeykit.sdk
from journeykit.consent import ConsentState, ConsentUpdate, Purpose, Source
from journeykit.sdk import AsyncClient, Client, Decision, InvalidMessage

DECISION: dict[str, Any] = {
    "subject": "user/1",
    "personalization": "granted",
    "segments": ["high_intent"],
    "stage": "consideration",
    "next_best_action": {"action": "cart_recovery_offer", "params": {}, "reason": "cart left"},
    "recommendations": [{"product_id": "p-2", "score": 0.5, "source": "popular"}],
    "rules_fired": ["high_intent"],
}
OPTIONS: dict[str, Any] = {"consent_regime": "opt_out", "pseudonymize": False, "send": False}


class Collector:
    """Answers decision requests from a script (default: DECISION) and keeps the requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            answer = self.answers.pop(0) if self.answers else httpx.Response(200, json=DECISION)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client_for(collector: Collector, **options: Any) -> Client:
    return Client(WRITE_KEY, transport=httpx.MockTransport(collector), **OPTIONS | options)


def test_a_decision_is_fetched_with_the_write_key_and_cached() -> None:
    collector = Collector()
    with client_for(collector) as client:
        first = client.decide("user/1")
        assert client.decide("user/1") is first  # from the cache
    assert isinstance(first, Decision)
    assert first.personalization == "granted"
    assert first.next_best_action is not None
    assert first.next_best_action.action == "cart_recovery_offer"
    assert [r.product_id for r in first.recommendations] == ["p-2"]
    [request] = collector.requests
    assert request.method == "GET"
    assert request.url.raw_path == b"/v1/decisions/user%2F1"  # the id is escaped whole
    user = base64.b64decode(request.headers["authorization"].split()[1]).decode()
    assert user == f"{WRITE_KEY}:"


def test_fresh_asks_again_and_refreshes_the_cache() -> None:
    collector = Collector(httpx.Response(200, json=DECISION))
    newer = {**DECISION, "segments": ["engaged_buyer"]}
    collector.answers.append(httpx.Response(200, json=newer))
    with client_for(collector) as client:
        assert client.decide("user/1").segments == ["high_intent"]
        assert client.decide("user/1", fresh=True).segments == ["engaged_buyer"]
        assert client.decide("user/1").segments == ["engaged_buyer"]  # cached again
    assert len(collector.requests) == 2


def test_a_fresh_not_consented_answer_is_not_followed_by_the_old_granted_one() -> None:
    # The person withdrew on another device; the app asked afresh and was told so.
    withdrawn = {**DECISION, "personalization": "not_consented", "segments": []}
    collector = Collector(httpx.Response(200, json=DECISION), httpx.Response(200, json=withdrawn))
    with client_for(collector) as client:
        assert client.decide("user/1").personalization == "granted"
        assert client.decide("user/1", fresh=True).personalization == "not_consented"
        client.decide("user/1")  # asked again, not answered with the older granted one
    assert len(collector.requests) == 3


def test_a_cached_decision_expires_after_decision_ttl() -> None:
    collector = Collector()
    with client_for(collector, decision_ttl=0.05) as client:
        client.decide("user/1")
        client.decide("user/1")
        assert len(collector.requests) == 1
        time.sleep(0.1)
        client.decide("user/1")
    assert len(collector.requests) == 2
    with client_for(collector, decision_ttl=0) as client:  # 0: never cached
        client.decide("user/1")
        client.decide("user/1")
    assert len(collector.requests) == 4


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(401, json={"detail": "unauthorized"}),
        httpx.Response(500),
        httpx.Response(200, content=b"{not json"),
        httpx.Response(200, json={"subject": "user/1"}),  # not a decision
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("refused"),
    ],
    ids=["401", "500", "invalid-json", "invalid-decision", "timeout", "network"],
)
def test_a_collector_that_cannot_answer_gives_unavailable_not_cached(answer: Any) -> None:
    collector = Collector(answer)
    with client_for(collector) as client:
        decision = client.decide("user/1")
        assert decision == Decision.empty("user/1", "unavailable")
        assert client.decide("user/1").personalization == "granted"  # asked again
    assert len(collector.requests) == 2


def test_fields_a_newer_collector_adds_are_ignored() -> None:
    newer = {**DECISION, "explanation": {"why": "new"}}
    newer["next_best_action"] = {**DECISION["next_best_action"], "channel": "email"}
    collector = Collector(httpx.Response(200, json=newer))
    with client_for(collector) as client:
        decision = client.decide("user/1")
    assert decision.personalization == "granted"
    assert decision.next_best_action is not None
    assert decision.next_best_action.action == "cart_recovery_offer"


def test_a_consent_change_forgets_the_cached_decision() -> None:
    collector = Collector()
    with client_for(collector, consent_regime="opt_in") as client:
        client.consent("user/1", granted=["analytics", "personalization"])
        client.decide("user/1")
        client.consent("user/1", granted=["marketing"])  # still personalization: ask again
        client.decide("user/1")
        assert len(collector.requests) == 2
        client.consent("user/1", denied=["personalization"])
        withdrawn = client.decide("user/1")
    # The withdrawal may not have reached the collector yet: answered here, no request.
    assert withdrawn == Decision.empty("user/1", "not_consented")
    assert len(collector.requests) == 2


def test_a_choice_kept_by_the_caller_forgets_the_cached_decision_too() -> None:
    collector = Collector()
    with client_for(collector, consent_regime="opt_out") as client:
        client.decide("user/1")
        client.consent("user/1", denied=["personalization"], remember=False)
        client.decide("user/1")  # not the cached answer: asked again
    assert len(collector.requests) == 2


def test_the_resolvers_consent_is_respected() -> None:
    def resolver(user_id: str | None, anonymous_id: str | None) -> ConsentState | None:
        update = ConsentUpdate(
            purposes={Purpose.PERSONALIZATION: user_id == "yes"},
            source=Source.BANNER,
            timestamp="2025-02-01T12:00:00Z",  # type: ignore[arg-type]
        )
        return ConsentState.from_update(update)

    collector = Collector()
    with client_for(collector, consent_resolver=resolver) as client:
        assert client.decide("no").personalization == "not_consented"
        assert client.decide("yes").personalization == "granted"
    assert [r.url.path for r in collector.requests] == ["/v1/decisions/yes"]


def test_invalid_user_ids_are_refused() -> None:
    collector = Collector()
    with client_for(collector) as client:
        assert client.decide("").personalization == "unavailable"
        assert client.decide(None).personalization == "unavailable"  # type: ignore[arg-type]
    with client_for(collector, strict=True) as client, pytest.raises(InvalidMessage):
        client.decide("")
    assert collector.requests == []


def test_no_connection_before_the_first_call_and_none_after_shutdown() -> None:
    collector = Collector()
    before = set(threading.enumerate())
    client = client_for(collector, send=True)
    assert collector.requests == []
    assert client.decide("user/1").personalization == "granted"
    assert set(threading.enumerate()) == before  # decide() starts no thread
    assert client.shutdown(timeout=5)
    assert client.decide("user/2") == Decision.empty("user/2", "unavailable")
    assert len(collector.requests) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_asks_over_its_own_connections() -> None:
    collector = Collector()
    client = client_for(collector)
    client.decide("user/1")

    def in_child() -> dict[str, Any]:
        cached = client.decide("user/1")  # the parent's cache is not the child's
        return {"personalization": cached.personalization, "asked": len(collector.requests)}

    assert in_forked_child(in_child) == {"personalization": "granted", "asked": 2}
    client.shutdown(timeout=5)


def test_the_async_client_decides_caches_and_bounds_the_wait() -> None:
    calls: list[str] = []

    async def collector(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.raw_path.decode())
        if request.url.path.endswith("/slow"):
            await asyncio.sleep(10)
        return httpx.Response(200, json=DECISION)

    async def main() -> list[Decision]:
        transport = httpx.MockTransport(collector)
        options = OPTIONS | {"decision_timeout": 0.1}
        async with AsyncClient(WRITE_KEY, transport=transport, **options) as client:
            first = await client.decide("user/1")
            again = await client.decide("user/1")
            slow = await client.decide("slow")
        return [first, again, slow, await client.decide("user/1")]

    first, again, slow, after = asyncio.run(main())
    assert first.personalization == "granted"
    assert again is first
    assert slow == Decision.empty("slow", "unavailable")
    assert after.personalization == "unavailable"  # shut down
    assert calls == ["/v1/decisions/user%2F1", "/v1/decisions/slow"]


def test_the_public_surface_is_sorted_and_complete() -> None:
    names = journeykit.sdk.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    assert {"Decision", "NextBestAction", "Recommendation"} <= set(names)
    for name in names:
        assert getattr(journeykit.sdk, name) is not None
