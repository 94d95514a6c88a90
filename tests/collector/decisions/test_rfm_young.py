"""RFM cut points for a young population: computed within seconds, not after rfm_refresh_seconds.

Driven through the engines' clock; the cut points every process scores against are read from
the shared store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from decisions_helpers import DAY, Clock, EngineFactory, order

from journeykit.collector.decisions import DecisionEngine, DecisionSettings, ProfileStore
from journeykit.collector.decisions._engine import open_store

YOUNG = DecisionSettings().rfm_young_refresh_seconds


@pytest.fixture
def store(settings: DecisionSettings, tmp_path: Path) -> Iterator[ProfileStore]:
    """The store the engines of ``make_engine`` share, to read the cut points they wrote."""
    opened = open_store(settings, tmp_path / "data")
    yield opened
    opened.close()


def customers(clock: Clock, first: int, last: int) -> list[dict[str, Any]]:
    """One order each, customer ``i`` ``i`` days ago for ``10 * (i + 1)`` USD."""
    return [order(f"c{i}", clock.now - i * DAY, 10.0 * (i + 1), ["p1"]) for i in range(first, last)]


def decide(engine: DecisionEngine, subject: str) -> Any:
    return engine.decide(subject, personalization_granted=True)


def rfm_segments(engine: DecisionEngine, subject: str) -> list[str]:
    return [s for s in decide(engine, subject).segments if s.startswith("rfm_")]


def test_a_fresh_store_scores_rfm_within_seconds(make_engine: EngineFactory, clock: Clock) -> None:
    engine = make_engine()
    assert rfm_segments(engine, "c0") == []  # no customers yet: no cut points
    engine.update(customers(clock, 0, 12))
    engine.flush()
    clock.advance(1)
    assert rfm_segments(engine, "c0") == []  # checked a second ago: not again yet
    clock.advance(YOUNG)
    assert rfm_segments(engine, "c0") == ["rfm_new"]  # the latest first order: R 5, F 1


def test_growth_recomputes_at_most_once_per_check_and_processes_agree(
    make_engine: EngineFactory, clock: Clock, store: ProfileStore
) -> None:
    first, second = make_engine(), make_engine()
    start = clock.now
    first.update(customers(clock, 0, 12))
    first.flush()
    decide(first, "c0")
    cuts = store.cut_points()
    assert cuts is not None
    assert (cuts.population, cuts.computed_at) == (12, start)

    second.update(customers(clock, 12, 24))  # twice the customers: over 25% more
    second.flush()
    for step in (1.0, YOUNG - 2):
        clock.advance(step)
        decide(first, "c0")
        decide(second, "c0")
        cuts = store.cut_points()
        assert cuts is not None
        assert cuts.population == 12  # within one check interval: not recomputed yet

    clock.now = start + YOUNG  # the next check, the same moment for every process
    subjects = [f"c{i}" for i in range(24)]
    assert [decide(second, s) for s in subjects] == [decide(first, s) for s in subjects]
    cuts = store.cut_points()
    assert cuts is not None
    assert (cuts.population, cuts.computed_at) == (24, start + YOUNG)

    first.update(customers(clock, 24, 27))  # 27 of 24: under 25% more
    first.flush()
    clock.advance(2 * YOUNG)
    decide(first, "c0")
    decide(second, "c0")
    cuts = store.cut_points()
    assert cuts is not None
    assert cuts.population == 24  # small growth waits for the periodic refresh

    clock.now = start + YOUNG + DecisionSettings().rfm_refresh_seconds
    assert [decide(second, s) for s in subjects] == [decide(first, s) for s in subjects]
    cuts = store.cut_points()
    assert cuts is not None
    assert cuts.population == 27


def test_the_young_check_can_be_slowed_down(make_engine: EngineFactory, clock: Clock) -> None:
    engine = make_engine(rfm_young_refresh_seconds=60)
    assert rfm_segments(engine, "c0") == []
    engine.update(customers(clock, 0, 12))
    engine.flush()
    clock.advance(YOUNG + 1)
    assert rfm_segments(engine, "c0") == []
    clock.advance(60)
    assert rfm_segments(engine, "c0") == ["rfm_new"]
