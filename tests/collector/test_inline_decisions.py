"""The decisions in a batch's answer: requests waiting together are decided together, alike."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import RunningCollector, running_collector

from journeykit.collector.personalize import Personalizer


@pytest.fixture
def opt_in(tmp_path: Path) -> Iterator[RunningCollector]:
    with running_collector(tmp_path / "data", consent_regime="opt_in") as running:
        yield running


def _consent(anonymous: str, personalization: bool, n: int) -> dict[str, Any]:
    purposes = {"analytics": True, "personalization": personalization}
    return {"type": "track", "anonymousId": anonymous, "event": "Consent Updated",
            "messageId": f"c-{anonymous}-{n}", "properties": {"purposes": purposes}}  # fmt: skip


def _view(user: str, anonymous: str | None, n: int) -> dict[str, Any]:
    properties = {"product_id": f"p{n % 3}", "category": "tea", "price": 10}
    event = {"type": "track", "userId": user, "event": "Product Viewed",
             "messageId": f"v-{user}-{n}", "properties": properties}  # fmt: skip
    if anonymous is not None:
        event["anonymousId"] = anonymous
    return event


def test_requests_decided_together_answer_what_each_alone_answers(opt_in: RunningCollector) -> None:
    consents = [_consent("anon-a", True, 0), _consent("anon-b", False, 0)]
    sent = httpx.post(f"{opt_in.url}/v1/batch", json={"batch": consents}, headers=opt_in.auth())
    assert sent.status_code == 200, sent.text
    personalizer: Personalizer = opt_in.app.state.collector.personalizer
    # One user seen through two devices: its consent is read from the device's record.
    requests = [
        personalizer.inline_ids([_view("u1", "anon-a", 1)]),
        personalizer.inline_ids([_view("u1", "anon-b", 2)]),
        personalizer.inline_ids([_view("u2", "anon-a", 3), _view("u3", "anon-b", 4)]),
        personalizer.inline_ids([_view("u1", "anon-a", 5)]),
    ]
    assert requests[0] == {"u1": ["u1", "anon-a"]}
    alone = [personalizer.for_ids(ids) for ids in requests]
    # The case the grouping must keep apart: the same subject, other ids, another answer.
    assert alone[0]["u1"].personalization == "granted"
    assert alone[1]["u1"].personalization == "not_consented"
    assert personalizer.for_requests(requests) == alone


def test_concurrent_batches_each_carry_their_own_subjects_decisions(
    opt_in: RunningCollector,
) -> None:
    consents = [_consent(f"anon-{n}", n % 3 != 0, 0) for n in range(30)]
    sent = httpx.post(f"{opt_in.url}/v1/batch", json={"batch": consents}, headers=opt_in.auth())
    assert sent.status_code == 200, sent.text

    async def post_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=30)
        async with httpx.AsyncClient(base_url=opt_in.url, limits=limits) as client:
            posts = [
                client.post(
                    "/v1/batch",
                    json={"batch": [_view(f"u{n}", f"anon-{n}", k) for k in range(3)]},
                    headers=opt_in.auth(),
                )
                for n in range(30)
            ]
            return await asyncio.gather(*posts)

    answers = asyncio.run(post_all())
    assert [a.status_code for a in answers] == [200] * 30
    for n, answer in enumerate(answers):
        body = answer.json()
        assert body["accepted"] == 3
        assert list(body["decisions"]) == [f"u{n}"]
        decision = body["decisions"][f"u{n}"]
        assert decision["subject"] == f"u{n}"
        expected = "not_consented" if n % 3 == 0 else "granted"
        assert decision["personalization"] == expected
