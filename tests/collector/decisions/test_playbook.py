"""Each default segment, stage and action, driven by realistic event sequences on both stores."""

from __future__ import annotations

from typing import Any

import pytest
from decisions_helpers import DAY, HOUR, Clock, EngineFactory, add, consent, order, track, view

from journeykit.collector.decisions import DecisionEngine
from journeykit.collector.decisions._bucketing import pick_variant


def granted(subject: str, clock: Clock) -> dict[str, Any]:
    return consent(subject, clock.now - 90 * DAY, personalization=True)


def decide(engine: DecisionEngine, subject: str) -> Any:
    return engine.decide(subject, personalization_granted=True)


def test_high_intent_gets_an_onsite_cart_offer(engine: DecisionEngine, clock: Clock) -> None:
    t = clock.now - 50 * 60
    engine.update([view("ann", p, t + i * 60) for i, p in enumerate(["p1", "p2", "p3"])])
    engine.update([add("ann", "p3", clock.now - 10 * 60)])
    d = decide(engine, "ann")
    assert "high_intent" in d.segments
    assert "cart_abandoner" not in d.segments  # added ten minutes ago: still shopping
    assert d.stage == "purchase"
    assert d.next_best_action is not None
    assert d.next_best_action.action == "cart_recovery_offer"
    assert d.next_best_action.params["channel"] == "onsite"
    clock.advance(2 * DAY)
    assert "high_intent" not in decide(engine, "ann").segments


def test_a_window_in_hours_counts_everything_inside_it(
    engine: DecisionEngine, clock: Clock
) -> None:
    """``count.24h`` counts by hour buckets: all of the last 24 hours, never less.

    At 9:10, views and an add at 9:40 the day before are 23.5 hours old, inside the window,
    though their hour began over 24 hours ago; the bucket of 9:00 that day is counted whole.
    """
    clock.advance(10 * 60)
    t = clock.now - 23.5 * HOUR
    engine.update([view("cy", p, t + i) for i, p in enumerate(["p1", "p2", "p3"])])
    engine.update([add("cy", "p3", t + 10)])
    assert "high_intent" in decide(engine, "cy").segments
    clock.advance(HOUR)  # now 25.5 hours old, and their hour is out of the window
    assert "high_intent" not in decide(engine, "cy").segments


def test_cart_abandoner_gets_the_offer_of_their_experiment_variant(
    engine: DecisionEngine, clock: Clock
) -> None:
    engine.update(
        [
            view("bob", "p9", clock.now - 3 * HOUR),
            add("bob", "p9", clock.now - 2 * HOUR, price=80.0),
        ]
    )
    d = decide(engine, "bob")
    assert d.segments == ["cart_abandoner"]
    assert d.next_best_action is not None
    variant = ["control", "discount_10"][pick_variant([5000, 5000], "cart_offer", "bob")]
    assert d.next_best_action.params == {
        "channel": "email",
        "discount_pct": 10 if variant == "discount_10" else 0,
        "experiment": "cart_offer",
        "variant": variant,
    }
    assert d.next_best_action.reason == "1 item(s) worth 80 USD left in the cart for over an hour"
    assert d.rules_fired == ["segment:cart_abandoner", "stage:purchase", "action:recover_cart"]
    clock.advance(8 * DAY)
    assert "cart_abandoner" not in decide(engine, "bob").segments  # a week-old cart is stale


def test_buying_the_cart_empties_it(engine: DecisionEngine, clock: Clock) -> None:
    engine.update([add("cy", "p1", clock.now - 3 * HOUR), add("cy", "p2", clock.now - 3 * HOUR)])
    engine.update([track("cy", "Product Removed", clock.now - 2 * HOUR, product_id="p2")])
    engine.update([order("cy", clock.now - HOUR, 50.0, ["p1"])])
    d = decide(engine, "cy")
    assert "cart_abandoner" not in d.segments
    assert d.next_best_action is not None
    assert d.next_best_action.action == "cross_sell"


@pytest.mark.parametrize(
    ("orders", "currency", "tier"),
    [
        ([600.0], "USD", "value_elite"),
        ([300.0, 200.0], "USD", "value_loyal"),
        ([100.0], "USD", "value_loyal"),
        ([40.0], "USD", "value_low"),
        ([480.0], "EUR", "value_elite"),  # 480 EUR is 518.40 USD at the default rate
        ([450.0], "EUR", "value_loyal"),
    ],
)
def test_value_tiers_on_lifetime_value_in_the_primary_currency(
    engine: DecisionEngine, clock: Clock, orders: list[float], currency: str, tier: str
) -> None:
    engine.update(
        [order("dee", clock.now - (i + 1) * DAY, t, ["p1"], currency) for i, t in enumerate(orders)]
    )
    segments = decide(engine, "dee").segments
    assert [s for s in segments if s.startswith("value_")] == [tier]


def test_visitors_who_never_bought_have_no_value_tier(engine: DecisionEngine, clock: Clock) -> None:
    engine.update([view("eve", "p1", clock.now - HOUR)])
    d = decide(engine, "eve")
    assert not [s for s in d.segments if s.startswith(("value_", "rfm_"))]
    assert d.stage == "consideration"


# (days since last order, orders, amount per order)
POPULATION = {
    "champ": (2, 6, 100.0),
    "loyal": (5, 4, 12.0),
    "at_risk": (60, 5, 50.0),
    "hib": (90, 1, 30.0),
    "new": (1, 1, 40.0),
    "f1": (20, 2, 30.0),
    "f2": (40, 1, 20.0),
    "f3": (10, 3, 60.0),
    "f4": (70, 2, 25.0),
    "f5": (30, 1, 15.0),
}


def test_rfm_segments_by_quintiles_of_the_population(engine: DecisionEngine, clock: Clock) -> None:
    events = []
    for name, (days_ago, orders, amount) in POPULATION.items():
        for i in range(orders):
            events.append(order(name, clock.now - (days_ago + 7 * i) * DAY, amount, [f"{name}{i}"]))
    engine.update(events)
    engine.flush()  # RFM cut points are computed over the stored customers
    decisions = engine.decide_many(POPULATION, dict.fromkeys(POPULATION, True))
    rfm = {s: [x for x in d.segments if x.startswith("rfm_")] for s, d in decisions.items()}
    assert rfm["champ"] == ["rfm_champions"]
    assert rfm["loyal"] == ["rfm_loyal"]
    assert rfm["at_risk"] == ["rfm_at_risk"]
    assert rfm["hib"] == ["rfm_hibernating"]
    assert rfm["new"] == ["rfm_new"]
    actions = {s: d.next_best_action.action for s, d in decisions.items() if d.next_best_action}
    assert actions["champ"] == "early_access"
    assert actions["at_risk"] == "reengagement"
    assert actions["loyal"] == "review_request"  # ordered 5 days ago
    assert actions["new"] == "cross_sell"
    reason = decisions["champ"].next_best_action
    assert reason is not None
    assert reason.reason == "Top customer: lifetime value 600 USD, RFM 555"


def test_a_young_shops_oldest_customers_are_not_won_back_days_after_buying(
    engine: DecisionEngine, clock: Clock
) -> None:
    # Twenty customers, each one order within the last three days: the oldest 40% by recency
    # are "at risk" or "hibernating" by RFM, and got a win-back email right after buying.
    events = [
        order(f"c{i:02d}", clock.now - i * 3 * DAY / 20 - 60, 30.0 + i, [f"p{i}"])
        for i in range(20)
    ]
    engine.update(events)
    engine.flush()
    subjects = [f"c{i:02d}" for i in range(20)]
    decisions = engine.decide_many(subjects, dict.fromkeys(subjects, True))
    oldest = decisions["c19"]
    assert {"rfm_at_risk", "rfm_hibernating"} & set(oldest.segments)
    actions = {d.next_best_action.action for d in decisions.values() if d.next_best_action}
    assert "reengagement" not in actions
    # Once the last order is over 14 days old, the same customer is won back.
    clock.advance(15 * DAY)
    later = decide(engine, "c19")
    assert later.next_best_action is not None
    assert later.next_best_action.action == "reengagement"


def test_rfm_cut_points_are_recomputed_as_the_population_changes(
    make_engine: EngineFactory, clock: Clock
) -> None:
    engine = make_engine(rfm_refresh_seconds=3600)
    engine.update([order("solo", clock.now - DAY, 10.0, ["p"])])
    assert "rfm_new" not in decide(engine, "solo").segments  # alone, every score is 1
    engine.update([order(f"old{i}", clock.now - (100 + i) * DAY, 10.0, ["p"]) for i in range(9)])
    engine.flush()
    assert "rfm_new" not in decide(engine, "solo").segments  # cut points not refreshed yet
    clock.advance(3601)
    d = decide(engine, "solo")
    assert "rfm_new" in d.segments
    assert "lapsed" not in d.segments


def test_engaged_buyer_and_retention(engine: DecisionEngine, clock: Clock) -> None:
    engine.update(
        [
            order("fay", clock.now - 20 * DAY, 30.0, ["a"]),
            order("fay", clock.now - DAY, 30.0, ["b"]),
        ]
    )
    d = decide(engine, "fay")
    assert "engaged_buyer" in d.segments
    assert d.stage == "retention"


def test_lapsed_customer_is_won_back(engine: DecisionEngine, clock: Clock) -> None:
    engine.update([order("gus", clock.now - 31 * DAY, 30.0, ["a"])])
    d = decide(engine, "gus")
    assert "lapsed" in d.segments
    assert d.next_best_action is not None
    assert d.next_best_action.action == "reengagement"
    assert d.next_best_action.reason == "No purchase in over 30 days after 1 order(s)"


def test_low_engagement_visitor(engine: DecisionEngine, clock: Clock) -> None:
    engine.update([{**track("hal", "x", clock.now - 8 * DAY), "type": "page", "name": "Home"}])
    d = decide(engine, "hal")
    assert d.segments == ["low_engagement"]
    assert d.stage == "awareness"
    assert d.next_best_action is not None
    assert d.next_best_action.action == "reengagement"
    assert d.next_best_action.params["incentive"] == "welcome"
    engine.update([view("hal", f"p{i}", clock.now - HOUR) for i in range(5)])
    assert "low_engagement" not in decide(engine, "hal").segments


def test_review_request_then_advocacy(engine: DecisionEngine, clock: Clock) -> None:
    engine.update([order("ivy", clock.now - 5 * DAY, 30.0, ["a"])])
    d = decide(engine, "ivy")
    assert d.stage == "purchase"
    assert d.next_best_action is not None
    assert d.next_best_action.action == "review_request"
    engine.update([track("ivy", "Product Reviewed", clock.now - HOUR, product_id="a", rating=5)])
    d = decide(engine, "ivy")
    assert d.stage == "advocacy"
    assert d.next_best_action is not None
    assert d.next_best_action.action == "cross_sell"


@pytest.mark.parametrize(
    ("name", "stage"),
    [("Products Searched", "consideration"), ("Checkout Started", "purchase")],
)
def test_stage_from_one_event(engine: DecisionEngine, clock: Clock, name: str, stage: str) -> None:
    engine.update([track("jo", name, clock.now - HOUR, query="boots")])
    assert decide(engine, "jo").stage == stage


def test_consent_recorded_in_the_profile_is_used_when_not_given(
    engine: DecisionEngine, clock: Clock
) -> None:
    engine.update([view("kim", "p1", clock.now - HOUR)])
    assert engine.decide("kim").personalization == "not_consented"
    engine.update([granted("kim", clock)])
    assert engine.decide("kim").personalization == "granted"
    assert engine.decide("nobody").personalization == "not_consented"
    fresh = engine.decide("nobody", personalization_granted=True)
    assert fresh.personalization == "granted"
    assert fresh.stage == "awareness"
    assert fresh.segments == []


def test_a_reason_names_a_trait_it_has_no_value_for(engine: DecisionEngine, clock: Clock) -> None:
    # One big customer: no RFM scores below rfm_min_customers, so the reason says so, not "".
    engine.update([order("solo", clock.now - DAY, 600.0, ["p1"])])
    engine.flush()
    action = decide(engine, "solo").next_best_action
    assert action is not None
    assert action.action == "early_access"
    assert action.reason == "Top customer: lifetime value 600 USD, RFM n/a"


def test_revenue_in_a_currency_without_a_rate_meets_no_value_tier(
    engine: DecisionEngine, clock: Clock
) -> None:
    # 50,000 BRL with no BRL rate: not value_low (revenue 0), not elite: an unknown value.
    engine.update([order("brl", clock.now - DAY, 50_000.0, ["p1"], currency="BRL")])
    engine.update([order("usd", clock.now - DAY, 20.0, ["p1"])])
    segments = {s: engine.decide(s, personalization_granted=True).segments for s in ("brl", "usd")}
    assert not {"value_low", "value_loyal", "value_elite"} & set(segments["brl"])
    assert "value_low" in segments["usd"]
