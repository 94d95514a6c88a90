"""Recommendations: co-occurrence, same-category and popularity fallbacks, exclusions."""

from __future__ import annotations

from decisions_helpers import DAY, HOUR, Clock, EngineFactory, order, view

from journeykit.collector.decisions import DecisionEngine


def _recs(engine: DecisionEngine, subject: str) -> list[tuple[str, str]]:
    # Item statistics are aggregates over everyone, read from the store: flush them first.
    engine.flush()
    d = engine.decide(subject, personalization_granted=True)
    return [(r.product_id, r.source) for r in d.recommendations]


def test_viewed_together_and_bought_together(engine: DecisionEngine, clock: Clock) -> None:
    t = clock.now - 5 * HOUR
    events = []
    for i in range(4):  # four shoppers look at the boot and the sock in one session
        events += [view(f"s{i}", "boot", t), view(f"s{i}", "sock", t + 60)]
    events.append(order("buyer", t, 60.0, ["boot", "lace"]))  # bought together weighs 3
    events.append(view("late", "boot", t))
    events.append(view("late", "hat", t + 3 * HOUR))  # hours apart: not viewed together
    engine.update(events)
    engine.update([view("me", "boot", clock.now - HOUR)])
    recs = _recs(engine, "me")
    assert recs[:2] == [("sock", "co_occurrence"), ("lace", "co_occurrence")]
    assert ("hat", "co_occurrence") not in recs


def test_a_late_view_from_days_before_is_not_viewed_together(
    engine: DecisionEngine, clock: Clock
) -> None:
    """Events arrive out of order (a phone back online sends last week's views): a view is
    paired with the session's others only when they are within the session either way."""
    now = clock.now - HOUR
    engine.update([view("late", "boot", now)])
    engine.update([view("late", "hat", now - 10 * DAY)])  # arrives after, happened long before
    engine.update([view("late", "sock", now - 60)])  # arrives after, happened a minute before
    engine.update([view("me", "boot", clock.now)])
    recs = _recs(engine, "me")
    assert recs[0] == ("sock", "co_occurrence")
    assert ("hat", "co_occurrence") not in recs


def test_cold_start_gets_popular_items(engine: DecisionEngine, clock: Clock) -> None:
    engine.update([view(f"s{i}", "top", clock.now - DAY) for i in range(3)])
    engine.update([view("s9", "second", clock.now - DAY)])
    assert _recs(engine, "newcomer") == [
        ("top", "popular"),
        ("second", "popular"),
    ]


def test_same_category_before_popular(engine: DecisionEngine, clock: Clock) -> None:
    engine.update([view(f"s{i}", "mug", clock.now - DAY, category="kitchen") for i in range(5)])
    engine.update([view(f"h{i}", "cap", clock.now - DAY, category="hats") for i in range(2)])
    engine.update([view("me", "beanie", clock.now - HOUR, category="hats")])
    recs = _recs(engine, "me")
    assert recs[:2] == [("cap", "category"), ("beanie", "category")]
    assert ("mug", "popular") in recs


def test_what_was_bought_is_never_recommended(engine: DecisionEngine, clock: Clock) -> None:
    t = clock.now - 5 * HOUR
    engine.update([order(f"b{i}", t, 30.0, ["tent", "stove"]) for i in range(3)])
    engine.update([order("me", t, 30.0, ["tent"]), order("me", t + 60, 10.0, ["stove"])])
    recs = _recs(engine, "me")
    assert "tent" not in [p for p, _ in recs]
    assert "stove" not in [p for p, _ in recs]


def test_a_customer_who_bought_most_of_the_popular_products_still_gets_k(
    engine: DecisionEngine, clock: Clock
) -> None:
    """The candidates fetched cover every product rank() may skip (up to 100 bought)."""
    t = clock.now - DAY
    engine.update([order("me", t + i, 10.0, [f"b{i:02}"]) for i in range(80)])
    engine.update([view(f"s{i}", f"o{i}", t, category="hats") for i in range(8)])
    recs = _recs(engine, "me")
    assert len(recs) == 5
    assert all(p.startswith("o") and source == "popular" for p, source in recs)


def test_top_k(make_engine: EngineFactory, clock: Clock) -> None:
    engine = make_engine(recommendations=2)
    engine.update([view("s", f"p{i}", clock.now - DAY) for i in range(6)])
    assert len(_recs(engine, "x")) == 2
    none = make_engine(recommendations=0)
    assert _recs(none, "x") == []
