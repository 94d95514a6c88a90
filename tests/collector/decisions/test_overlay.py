"""Folded overlays give the answers a re-fold of the queue gives, whatever happens in between.

An engine that decides after every step (so reuses and extends its overlays) is compared with a
fresh engine that replays the same steps without deciding, then decides once: its only fold is
a re-fold of the whole queue on the stored profiles. Steps: updates (views, adds, removals,
orders, consent, identity merges both ways, missing and future timestamps), flushes, erasures,
and a clock moving forward across hour and day windows, or back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from decisions_helpers import (
    DAY,
    HOUR,
    Clock,
    add,
    alias,
    consent,
    identify,
    iso,
    order,
    track,
    view,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journeykit.collector.decisions import DecisionEngine, DecisionSettings, load_rules
from journeykit.collector.decisions._engine import open_store

SUBJECTS = ["u1", "u2", "a1", "a2"]
PRODUCTS = ["p1", "p2", "p3"]
SETTINGS = DecisionSettings(
    flush_interval_seconds=3600.0,
    stats_flush_seconds=3600.0,
    rfm_min_customers=1_000_000,  # cut points come from flushed customers: not under test here
)

Step = tuple[Any, ...]


def _event(kind: str, subject: str, other: str, pid: str, offset: float, now: float) -> Any:
    ts = now + offset
    anonymous = subject.startswith("a")
    if kind == "view":
        return view(subject, pid, ts, category=f"c{pid}", anonymous=anonymous)
    if kind == "add":
        return add(subject, pid, ts, anonymous=anonymous)
    if kind == "remove":
        return track(subject, "Product Removed", ts, anonymous, product_id=pid, quantity=1)
    if kind == "order":
        return order(subject, ts, 40.0, [pid, "p1"])
    if kind == "consent":
        return consent(subject, ts, personalization=offset > -DAY)
    if kind == "identify":
        return identify(subject, other, ts)
    if kind == "alias":
        return alias(subject, other, ts)
    if kind == "untimed":
        return {"type": "page", "userId": subject, "name": "Home"}
    return {"type": "page", "userId": subject, "name": "Home", "timestamp": iso(ts + 2 * HOUR)}


_events = st.tuples(
    st.sampled_from(
        ["view", "add", "remove", "order", "consent", "identify", "alias", "untimed", "future"]
    ),
    st.sampled_from(SUBJECTS),
    st.sampled_from(SUBJECTS),
    st.sampled_from(PRODUCTS),
    st.sampled_from([-40 * DAY, -3 * DAY, -2 * HOUR, -60.0, 0.0]),
)
_advance = st.sampled_from([0.0, 0.0, 0.4, 1.0, HOUR, 20 * HOUR, 2 * DAY, -1.0, -HOUR])
_steps = st.one_of(
    st.tuples(st.just("update"), st.lists(_events, min_size=1, max_size=5)),
    st.tuples(st.just("advance"), _advance),
    st.tuples(st.just("decide"), st.sampled_from(SUBJECTS)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("forget"), st.sampled_from(SUBJECTS)),
    # Another process writes to the same store: the stored profiles change under the queue.
    st.tuples(st.just("elsewhere"), st.lists(_events, min_size=1, max_size=3)),
)
# Mostly what makes an overlay reused: events, maybe time passing, a decision, again.
_rounds = st.lists(
    st.one_of(
        st.tuples(
            st.tuples(st.just("update"), st.lists(_events, min_size=1, max_size=4)),
            st.tuples(st.just("advance"), _advance),
            st.tuples(st.just("decide"), st.sampled_from(SUBJECTS)),
        ),
        st.tuples(_steps),
    ),
    min_size=1,
    max_size=8,
).map(lambda rounds: [step for r in rounds for step in r])


class _Run:
    """One engine on its own store and clock, and the steps it has been given."""

    def __init__(self, folder: Path) -> None:
        self.clock = Clock()
        self.engine = DecisionEngine(
            open_store(SETTINGS, folder), load_rules(None), SETTINGS, self.clock
        )
        self.other = DecisionEngine(
            open_store(SETTINGS, folder), load_rules(None), SETTINGS, self.clock
        )

    def close(self) -> None:
        self.engine.close()
        self.other.close()

    def step(self, step: Step) -> None:
        kind = step[0]
        if kind == "update":
            now = self.clock.now
            self.engine.update([_event(*e, now) for e in step[1]])
        elif kind == "advance":
            self.clock.advance(step[1])
        elif kind == "flush":
            assert self.engine.flush()
        elif kind == "forget":
            self.engine.forget([step[1]])
        elif kind == "elsewhere":
            self.other.update([_event(*e, self.clock.now) for e in step[1]])
            assert self.other.flush()

    def answer(self, subject: str) -> tuple[Any, Any]:
        decision = self.engine.decide(subject, True).model_dump()
        return decision, self.engine.profile(subject)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=_rounds)
def test_decisions_match_a_refold(
    steps: list[Step], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("overlay")
    live = _Run(folder / "live")
    try:
        for n, step in enumerate(steps):
            if step[0] != "decide":
                live.step(step)
                continue
            replay = _Run(folder / f"replay{n}")
            try:
                for earlier in steps[:n]:
                    replay.step(earlier)
                assert live.answer(step[1]) == replay.answer(step[1])
            finally:
                replay.close()
    finally:
        live.close()


def test_an_overlay_is_extended_not_refolded(tmp_path: Path) -> None:
    """The second decision folds only the newer event: same answer as a fresh engine."""
    clock = Clock()
    engine = DecisionEngine(open_store(SETTINGS, tmp_path / "a"), load_rules(None), SETTINGS, clock)
    fresh = DecisionEngine(open_store(SETTINGS, tmp_path / "b"), load_rules(None), SETTINGS, clock)
    first = [view("u1", "p1", clock.now - 60), add("u1", "p1", clock.now - 30)]
    then = [order("u1", clock.now, 40.0, ["p1"])]
    try:
        engine.update(first)
        engine.decide("u1", True)
        engine.update(then)
        fresh.update(first + then)
        assert engine.profile("u1") == fresh.profile("u1")
        assert engine.profile("u1")["orders"] == 1  # type: ignore[index]
        assert not (engine.profile("u1") or {}).get("cart")  # the order emptied the cart
    finally:
        engine.close()
        fresh.close()
