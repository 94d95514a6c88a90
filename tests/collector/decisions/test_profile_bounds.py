"""A profile document stays small whatever the history; its event times parse fast and right."""

from __future__ import annotations

import orjson
import pytest
from decisions_helpers import DAY, HOUR, Clock, add, order, track, view

from journeykit.collector.decisions import DecisionEngine
from journeykit.collector.decisions._profile import (
    DAY_BUCKETS,
    HOUR_BUCKETS,
    MAX_BOUGHT,
    MAX_CART,
    MAX_CATEGORIES,
    MAX_EVENT_NAMES,
    MAX_RECENT,
    OTHER_EVENTS,
)
from journeykit.collector.decisions._timestamps import TimeParser


def _history(clock: Clock) -> list[dict[str, object]]:
    """90 days of a heavy user: every hour, a custom event of 40 names, views, adds, orders."""
    events: list[dict[str, object]] = []
    start = clock.now - 90 * DAY
    for h in range(90 * 24):
        t = start + h * HOUR
        events.append(track("heavy", f"Custom {h % 40}", t))
        events.append(view("heavy", f"v{h}", t + 1, category=f"cat{h % 45}"))
        if h % 3 == 0:
            events.append(add("heavy", f"a{h}", t + 2))
        if h % 7 == 0:
            events.append(order("heavy", t + 3, 20.0, [f"o{h}", f"o{h + 1}"]))
    return events


def test_a_long_history_keeps_the_document_small(engine: DecisionEngine, clock: Clock) -> None:
    events = _history(clock)
    engine.update(events)
    engine.flush()
    doc = engine._store.fetch(["heavy"])["heavy"]
    assert len(doc["recent"]) == MAX_RECENT
    assert len(doc["cats"]) == MAX_CATEGORIES
    assert len(doc["cart"]) == MAX_CART
    assert len(doc["bought"]) == MAX_BOUGHT
    assert len(doc["c"]) == MAX_EVENT_NAMES + 1  # the names beyond the bound share one entry
    for _, days, hours in doc["c"].values():
        assert len(days) <= 2 * DAY_BUCKETS
        assert len(hours) <= 2 * HOUR_BUCKETS
    # Nothing lost from the lifetime counts: late names are counted under OTHER_EVENTS.
    assert sum(entry[0] for entry in doc["c"].values()) == len(events)
    assert doc["c"][OTHER_EVENTS][0] > 0
    assert doc["views"] == 90 * 24
    assert len(orjson.dumps(doc)) < 12_000  # 8.3 KB when written
    # A short history is far smaller.
    engine.update([view("light", "p1", clock.now - HOUR), add("light", "p1", clock.now)])
    engine.flush()
    assert len(orjson.dumps(engine._store.fetch(["light"])["light"])) < 400


def test_rolling_counts_survive_the_compact_form(engine: DecisionEngine, clock: Clock) -> None:
    # Out of order on purpose: counts kept per day and hour in ascending order regardless.
    times = [clock.now - 2 * HOUR, clock.now - 30 * HOUR, clock.now - 2 * HOUR, clock.now - HOUR]
    engine.update([view("u", f"p{i}", t) for i, t in enumerate(times)])
    engine.update([add("u", "p1", clock.now - HOUR)])
    # high_intent: 3+ views and an add within 24 h (the 30-hour-old view does not count).
    assert "high_intent" in engine.decide("u", personalization_granted=True).segments
    engine.flush()
    _, days, hours = engine._store.fetch(["u"])["u"]["c"]["Product Viewed"]
    assert hours[0::2] == sorted(hours[0::2])
    assert sum(hours[1::2]) == 4
    assert sum(days[1::2]) == 4


NOW = 1_800_000_000


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-03-02T09:00:00.123Z", 1772442000),
        ("2026-03-02T09:00:00.999+00:00", 1772442000),
        ("2026-03-02T09:59:59.000Z", 1772445599),
        ("2026-03-02T10:00:00.5+01:00", 1772442000),
        ("2026-03-02T09:00:00Z", 1772442000),
        ("2026-03-02T09:00Z", 1772442000),
        ("2026-03-02T09:60:00.000Z", NOW),  # not a time: now
        ("2026-03-02T24:00:00.000Z", NOW),
        ("2026-02-30T09:00:00.000Z", NOW),
        ("2026-03-02T09:00:00.12xZ", NOW),
        ("2026-03-02T09:0\u0663:00.123Z", NOW),  # a non-ASCII digit
        ("yesterday", NOW),
        ("2099-01-01T00:00:00.000Z", NOW),  # ahead of our clock: now
        (None, NOW),
        (1772442000, NOW),
        (["2026-03-02T09:00:00.123Z"], NOW),
    ],
)
def test_event_times(raw: object, expected: int) -> None:
    parser = TimeParser()
    # Twice: the second answer comes from the caches and must be the same.
    assert parser.parse(raw, NOW) == expected
    assert parser.parse(raw, NOW) == expected


def test_a_cached_second_is_never_lent_to_a_malformed_string() -> None:
    parser = TimeParser()
    assert parser.parse("2026-03-02T09:00:00.123Z", NOW) == 1772442000
    assert parser.parse("2026-03-02T09:00:00.1x3Z", NOW) == NOW
    assert parser.parse("2026-03-02T09:00:00.1x3+01:00", NOW) == NOW


def test_huge_quantities_and_amounts_cannot_poison_the_store(
    engine: DecisionEngine, clock: Clock
) -> None:
    # Valid JSON all: summed, the quantities passed 64 bits and the totals reached infinity
    # (stored as null), and every later write of the store failed, everybody's included.
    t = clock.now - HOUR
    huge = 2**64 - 1
    engine.update(
        [
            track("bob", "Product Added", t, product_id="p1", price=1e308, quantity=huge),
            track("bob", "Product Added", t + 1, product_id="p1", price=1e308, quantity=huge),
            order("bob", t + 2, 1e308, ["p1"]),
            order("bob", t + 3, 1e308, ["p1"]),
        ]
    )
    engine.update([view("alice", "p2", t + 4)])
    assert engine.flush()
    assert engine.pending == 0
    assert "value_elite" in engine.decide("bob", personalization_granted=True).segments
    assert engine.profile("alice") is not None
    stored = orjson.dumps(engine.profile("bob"))
    assert b"null" not in stored
