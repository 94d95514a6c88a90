"""Decisions over HTTP: inline in every batch answer, and GET /v1/decisions/{subject}."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import RunningCollector, basic_auth, running_collector

N = 0


def event(user: str, name: str, **properties: Any) -> dict[str, Any]:
    global N
    N += 1
    return {
        "type": "track",
        "userId": user,
        "event": name,
        "messageId": f"d-{N}",
        "properties": properties,
    }


def consent(user: str, **purposes: bool) -> dict[str, Any]:
    return event(user, "Consent Updated", purposes=purposes, source="banner")


def shopping(user: str) -> list[dict[str, Any]]:
    views = [
        event(user, "Product Viewed", product_id=f"p{i}", category="tea", price=10)
        for i in range(4)
    ]
    return [*views, event(user, "Product Added", product_id="p1", price=10, quantity=1)]


def send(running: RunningCollector, batch: list[dict[str, Any]]) -> dict[str, Any]:
    answer = httpx.post(f"{running.url}/v1/batch", json={"batch": batch}, headers=running.auth())
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture
def opt_in(tmp_path: Path) -> Iterator[RunningCollector]:
    # Several people per batch in these tests: their decisions all come back inline.
    with running_collector(
        tmp_path / "data", consent_regime="opt_in", inline_decisions=10
    ) as running:
        yield running


def test_the_batch_answer_carries_decisions_of_its_subjects(opt_in: RunningCollector) -> None:
    granted = consent("ana", analytics=True, personalization=True)
    analytics_only = consent("bo", analytics=True, personalization=False)
    answer = send(opt_in, [granted, analytics_only, *shopping("ana"), *shopping("bo")])
    assert answer["accepted"] == 12
    ana, bo = answer["decisions"]["ana"], answer["decisions"]["bo"]
    assert ana["personalization"] == "granted"
    assert "high_intent" in ana["segments"]  # 3+ views and an add, no purchase
    assert ana["stage"] == "purchase"  # something in the cart
    assert ana["next_best_action"] is not None
    assert isinstance(ana["recommendations"], list)  # item statistics arrive with a flush
    assert bo == {
        "subject": "bo",
        "personalization": "not_consented",
        "segments": [],
        "stage": None,
        "next_best_action": None,
        "recommendations": [],
        "rules_fired": [],
    }


def test_get_decision_matches_the_inline_one(opt_in: RunningCollector) -> None:
    answer = send(opt_in, [consent("cy", analytics=True, personalization=True), *shopping("cy")])
    got = httpx.get(f"{opt_in.url}/v1/decisions/cy", headers=opt_in.auth())
    assert got.status_code == 200
    assert got.json() == answer["decisions"]["cy"]


def test_recommendations_follow_once_item_statistics_are_written(
    opt_in: RunningCollector,
) -> None:
    # Others bought p1 with p7: once the engine has written its item statistics (within its
    # stats flush interval), a shopper with p1 in the cart is offered p7, never p1 itself.
    buyers = [consent(f"b{i}", analytics=True, personalization=True) for i in range(3)]
    orders = [
        event(
            f"b{i}",
            "Order Completed",
            order_id=f"o{i}",
            total=30,
            currency="EUR",
            products=[{"product_id": "p1", "price": 10}, {"product_id": "p7", "price": 20}],
        )
        for i in range(3)
    ]
    send(opt_in, [*buyers, *orders])
    send(opt_in, [consent("gi", analytics=True, personalization=True), *shopping("gi")])
    deadline = time.monotonic() + 30
    while True:
        got = httpx.get(f"{opt_in.url}/v1/decisions/gi", headers=opt_in.auth()).json()
        offered = [r["product_id"] for r in got["recommendations"]]
        if "p7" in offered or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert "p7" in offered
    assert "p1" not in offered  # already in the cart


def test_withdrawing_personalization_removes_the_decision(opt_in: RunningCollector) -> None:
    send(opt_in, [consent("di", analytics=True, personalization=True), *shopping("di")])
    send(opt_in, [consent("di", personalization=False)])
    got = httpx.get(f"{opt_in.url}/v1/decisions/di", headers=opt_in.auth()).json()
    assert got["personalization"] == "not_consented"
    assert got["segments"] == []


def test_a_device_id_is_not_personalized_after_its_user_withdrew(
    opt_in: RunningCollector,
) -> None:
    # The banner granted on the device before login; signed in, the user withdrew.
    device = [
        dict(e, anonymousId="dev-x")
        for e in [consent("", analytics=True, personalization=True), *shopping("")]
    ]
    for e in device:
        del e["userId"]
    send(opt_in, device)
    send(
        opt_in, [{"type": "identify", "messageId": "id-x", "userId": "ux", "anonymousId": "dev-x"}]
    )
    send(opt_in, [consent("ux", personalization=False)])
    got = httpx.get(f"{opt_in.url}/v1/decisions/dev-x", headers=opt_in.auth()).json()
    assert (got["personalization"], got["segments"]) == ("not_consented", [])
    page = {"type": "page", "messageId": "pg-x", "anonymousId": "dev-x", "name": "Home"}
    inline = send(opt_in, [page])["decisions"]["dev-x"]
    assert inline["personalization"] == "not_consented"


def test_an_unknown_subject_without_consent_is_not_consented(opt_in: RunningCollector) -> None:
    got = httpx.get(f"{opt_in.url}/v1/decisions/nobody%2Fat%20all", headers=opt_in.auth())
    assert got.status_code == 200
    assert got.json()["subject"] == "nobody/at all"
    assert got.json()["personalization"] == "not_consented"


def test_get_decision_needs_a_write_key(opt_in: RunningCollector) -> None:
    assert httpx.get(f"{opt_in.url}/v1/decisions/ana").status_code == 401
    wrong = httpx.get(f"{opt_in.url}/v1/decisions/ana", headers=basic_auth("wrong"))
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"


def test_a_subject_with_control_characters_is_400(opt_in: RunningCollector) -> None:
    answer = httpx.get(f"{opt_in.url}/v1/decisions/a%01b", headers=opt_in.auth())
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_subject"


def test_without_decisions_the_answer_is_empty_and_get_is_404(tmp_path: Path) -> None:
    with running_collector(tmp_path / "data", decisions=False) as running:
        answer = send(running, shopping("ed"))
        assert answer["decisions"] == {}
        got = httpx.get(f"{running.url}/v1/decisions/ed", headers=running.auth())
        assert got.status_code == 404
        assert got.json()["error"]["code"] == "decisions_disabled"


def test_inline_decisions_are_capped(tmp_path: Path) -> None:
    with running_collector(tmp_path / "data", inline_decisions=2) as running:
        answer = send(running, [e for u in ("f1", "f2", "f3") for e in shopping(u)])
        assert sorted(answer["decisions"]) == ["f1", "f2"]


def test_by_default_the_batchs_first_person_is_decided(tmp_path: Path) -> None:
    # A browser or app batch is one person; a server's batch of many asks GET per person.
    with running_collector(tmp_path / "data") as running:
        answer = send(running, [e for u in ("h1", "h2") for e in shopping(u)])
        assert list(answer["decisions"]) == ["h1"]


def test_decision_options_reach_the_engine_of_a_served_collector(tmp_path: Path) -> None:
    # Written at once (no write-behind) and one recommendation per decision: without the
    # options, the item statistics would take up to 5 s to arrive and five would be offered.
    options = {"flush_interval_seconds": 0, "stats_flush_seconds": 0, "recommendations": 1}
    with running_collector(
        tmp_path / "data", consent_regime="opt_in", decision_options=options
    ) as running:
        products = [{"product_id": p, "price": 10} for p in ("p1", "p7", "p8")]
        buyer = event("b", "Order Completed", order_id="o", total=30, products=products)
        send(running, [consent("b", analytics=True, personalization=True), buyer])
        cart = event("gi", "Product Added", product_id="p1", price=10, quantity=1)
        send(running, [consent("gi", analytics=True, personalization=True), cart])
        got = httpx.get(f"{running.url}/v1/decisions/gi", headers=running.auth()).json()
    assert len(got["recommendations"]) == 1
    assert got["recommendations"][0]["product_id"] in {"p7", "p8"}
