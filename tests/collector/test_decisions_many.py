"""A batch of GET /v1/decisions requests: one ``Personalizer.many``, the answers of ``one``.

Also the answer's JSON: :func:`decision_json` gives the bytes pydantic's ``model_dump`` gave.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from helpers import RunningCollector, running_collector
from hypothesis import given
from hypothesis import strategies as st

from journeykit.collector.decisions_api import DecisionBatches, decision_json
from journeykit.collector.personalize import Personalizer
from journeykit.sdk._decision import Decision, NextBestAction, Recommendation


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[RunningCollector]:
    with running_collector(tmp_path / "data", consent_regime="opt_out") as running:
        yield running


def _event(user: str, name: str, n: int, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": name, "messageId": f"m-{user}-{n}",
            "properties": properties}  # fmt: skip


def test_many_answers_what_one_answers(collector: RunningCollector) -> None:
    batch = []
    for n in range(12):
        props = {"product_id": f"p{n % 5}", "category": ("tea", "cups")[n % 2], "price": 10}
        batch.append(_event(f"u{n}", "Product Viewed", 0, **props))
        if n % 3 == 0:
            batch.append(_event(f"u{n}", "Product Added", 1, **props, quantity=1))
        if n % 4 == 1:  # withdrawn: not_consented from the collector's consent record
            purposes = {"analytics": True, "personalization": False}
            batch.append(_event(f"u{n}", "Consent Updated", 2, purposes=purposes))
    sent = httpx.post(f"{collector.url}/v1/batch", json={"batch": batch}, headers=collector.auth())
    assert sent.status_code == 200, sent.text
    personalizer: Personalizer = collector.app.state.collector.personalizer
    subjects = [f"u{n}" for n in range(12)] + ["u3", "nobody", "u0"]
    together = personalizer.many(subjects)
    assert together == {s: personalizer.one(s) for s in subjects}
    kinds = {d.personalization for d in together.values()}
    assert kinds == {"granted", "not_consented"}
    # Over HTTP: concurrent requests (batched by DecisionBatches) answer the same bytes.
    over_http = asyncio.run(_ask(collector, subjects * 4))
    assert over_http == [decision_json(together[s]) for s in subjects * 4]


async def _ask(running: RunningCollector, subjects: Sequence[str]) -> list[bytes]:
    limits = httpx.Limits(max_connections=len(subjects))
    async with httpx.AsyncClient(base_url=running.url, limits=limits) as client:
        asks = [client.get(f"/v1/decisions/{s}", headers=running.auth()) for s in subjects]
        answers = await asyncio.gather(*asks)
    assert {a.status_code for a in answers} == {200}
    return [a.content for a in answers]


def test_a_failing_batch_is_decided_again_one_by_one() -> None:
    asked: list[Sequence[str]] = []

    def many(subjects: Sequence[str]) -> dict[str, Decision]:
        asked.append(list(subjects))
        raise RuntimeError("the store went away")

    def one(subject: str) -> Decision:
        if subject == "bad":
            raise ValueError("no decision for you")
        return Decision.empty(subject, "not_consented")

    async def scenario() -> list[Decision | BaseException]:
        batches = DecisionBatches(one, decide_many=many)
        asks = [batches.decide(s) for s in ("a", "bad", "b")]
        return await asyncio.gather(*asks, return_exceptions=True)

    a, bad, b = asyncio.run(scenario())
    assert asked  # the batch went to many first
    assert isinstance(bad, ValueError)
    assert (a, b) == (Decision.empty("a", "not_consented"), Decision.empty("b", "not_consented"))


_text = st.text(max_size=12)
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), _text,
    st.floats(),
)  # fmt: skip
_other = st.one_of(
    st.dates(), st.datetimes(timezones=st.just(dt.UTC)), st.lists(_scalar, max_size=3),
    st.dictionaries(_text, _scalar, max_size=3), st.tuples(_scalar, _scalar),
)  # fmt: skip
_action = st.builds(
    NextBestAction,
    action=_text,
    params=st.dictionaries(_text, st.one_of(_scalar, _scalar, _other), max_size=4),
    reason=_text,
)
_recommendation = st.builds(
    Recommendation,
    product_id=_text,
    score=st.floats(),  # orjson writes inf and nan as null, both ways
    source=st.sampled_from(["co_occurrence", "category", "popular"]),
)
_decision = st.builds(
    Decision,
    subject=_text,
    personalization=st.sampled_from(["granted", "not_consented", "unavailable"]),
    segments=st.lists(_text, max_size=3),
    stage=st.one_of(st.none(), _text),
    next_best_action=st.one_of(st.none(), _action),
    recommendations=st.lists(_recommendation, max_size=5),
    rules_fired=st.lists(_text, max_size=3),
)


@given(_decision)
def test_decision_json_is_byte_identical_to_model_dump(decision: Decision) -> None:
    try:
        want = orjson.dumps(decision.model_dump(mode="json"))
    except orjson.JSONEncodeError:  # lone surrogates: both ways refuse them
        with pytest.raises(orjson.JSONEncodeError):
            decision_json(decision)
        return
    assert decision_json(decision) == want
