"""Write-behind: queued updates are decided on at once here, written by flush, close and time."""

from __future__ import annotations

import time

import pytest
from decisions_helpers import DAY, HOUR, Clock, EngineFactory, add, identify, order, view

from journeykit.collector.decisions import DecisionEngine


@pytest.fixture
def mode() -> str:
    return "queued"  # nothing is written until a test flushes, closes or waits


def _views(engine: DecisionEngine, subject: str) -> int | None:
    doc = engine._store.fetch([subject]).get(subject)
    return None if doc is None else int(doc.get("views", 0))


def test_queued_updates_are_decided_on_here_and_seen_elsewhere_after_flush(
    make_engine: EngineFactory, clock: Clock
) -> None:
    here, elsewhere = make_engine(), make_engine()
    here.update([order("u", clock.now - DAY, 700.0, ["p"]), view("u", "q", clock.now - HOUR)])
    assert here.pending == 2
    assert "value_elite" in here.decide("u", personalization_granted=True).segments
    assert elsewhere.decide("u", personalization_granted=True).segments == []
    assert here.flush()
    assert here.pending == 0
    assert "value_elite" in elsewhere.decide("u", personalization_granted=True).segments
    # After the flush, the queue is not counted a second time on top of the store.
    assert _views(here, "u") == 1
    here.update([view("u", "r", clock.now)])
    assert here.decide("u", personalization_granted=True) == here.decide("u", True)
    here.flush()
    assert _views(here, "u") == 2


def test_a_queued_login_merges_stored_browsing(make_engine: EngineFactory, clock: Clock) -> None:
    engine = make_engine()
    t = clock.now - 3 * HOUR
    engine.update([view("anon", f"p{i}", t + i, anonymous=True) for i in range(3)])
    engine.update([add("anon", "p2", t + 60, anonymous=True)])
    engine.flush()
    result = engine.update([identify("user", "anon", clock.now - 2 * HOUR)])
    assert result.merged == 1
    assert "high_intent" in engine.decide("user", personalization_granted=True).segments
    assert engine.decide("anon", True).segments == engine.decide("user", True).segments


def test_close_writes_the_queue(make_engine: EngineFactory, clock: Clock) -> None:
    first = make_engine()
    first.update([view("u", "p", clock.now)])
    first.close()
    assert _views(make_engine(), "u") == 1


def test_forget_drops_queued_events(make_engine: EngineFactory, clock: Clock) -> None:
    engine = make_engine()
    engine.update([order("gone", clock.now - DAY, 700.0, ["p"]), view("kept", "p", clock.now)])
    assert engine.forget(["gone"]) == 1
    assert engine.pending == 1
    assert engine.decide("gone", personalization_granted=True).segments == []
    engine.flush()
    assert _views(engine, "gone") is None
    assert _views(engine, "kept") == 1
    assert engine.forget(["gone", "never"]) == 0


def test_a_full_queue_is_written_at_once(make_engine: EngineFactory, clock: Clock) -> None:
    engine = make_engine(flush_events=3)
    engine.update([view("u", "p1", clock.now), view("u", "p2", clock.now)])
    assert engine.pending == 2
    engine.update([view("u", "p3", clock.now)])
    assert engine.pending == 0
    assert _views(engine, "u") == 3


def test_the_background_flush_writes_within_the_interval(
    make_engine: EngineFactory, clock: Clock
) -> None:
    engine = make_engine(flush_interval_seconds=0.05)
    engine.update([view("u", "p", clock.now)])
    deadline = time.monotonic() + 30  # a bound for a loaded machine, not a timing assertion
    while engine.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.pending == 0
    assert _views(make_engine(), "u") == 1
    assert engine.stats["flushes"] >= 1
