"""SQLite keeps item lists in the process between item-statistics writes, and answers the same.

The lists (neighbours, popular, per category) are dropped when the store's item generation
changes: a write by another process is seen by this process's next decision.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from decisions_helpers import DAY, START, Clock, add, identify, order, view

from journeykit.collector.decisions import DecisionEngine, DecisionSettings, load_rules
from journeykit.collector.decisions._engine import open_store
from journeykit.collector.decisions._item_cache import ItemCache
from journeykit.collector.decisions._sqlite import SqliteStore

CATEGORIES = ("shoes", "hats", "bags")
WRITTEN = {"flush_interval_seconds": 0.0, "stats_flush_seconds": 0.0}


def _engine(data: Path, clock: Clock, **changes: Any) -> DecisionEngine:
    settings = DecisionSettings(**{**WRITTEN, **changes})
    return DecisionEngine(open_store(settings, data), load_rules(None), settings, clock)


def _recs(engine: DecisionEngine, subject: str) -> list[tuple[str, str]]:
    decision = engine.decide(subject, True)
    return [(r.product_id, r.source) for r in decision.recommendations]


def test_another_process_writing_item_statistics_is_seen_by_the_next_decision(
    tmp_path: Path,
) -> None:
    clock = Clock()
    data = tmp_path / "data"
    engine = _engine(data, clock)
    try:
        engine.update([view(f"u{n}", f"p{n % 3}", START) for n in range(9)])
        engine.update([view("fan", "p0", START)])
        before_newcomer = _recs(engine, "newcomer")
        before_fan = _recs(engine, "fan")
        assert ("hot", "popular") not in before_newcomer
        assert all(pid != "hot" for pid, _ in before_fan)
        # Another process, its own engine on the same file: "hot" becomes the most viewed
        # product, and is viewed together with p0 (the fan's last view).
        script = textwrap.dedent(
            f"""
            from pathlib import Path
            from journeykit.collector.decisions import DecisionEngine, DecisionSettings
            from decisions_helpers import START, view
            engine = DecisionEngine.open(DecisionSettings(), Path({str(data)!r}))
            events = []
            for n in range(30):
                events += [view(f"w{{n}}", "p0", START)] if n < 10 else []
                events += [view(f"w{{n}}", "hot", START + 1)]
            engine.update(events)
            assert engine.flush()
            engine.close()
            """
        )
        helpers = Path(__file__).parent
        subprocess.run([sys.executable, "-c", script], check=True, cwd=helpers, timeout=60)
        after_newcomer = _recs(engine, "newcomer")
        after_fan = _recs(engine, "fan")
        assert after_newcomer[0] == ("hot", "popular")
        assert after_fan[0] == ("hot", "co_occurrence")
        # The same answers a process without kept lists gives.
        fresh = _engine(data, clock, item_cache_entries=0)
        try:
            assert _recs(fresh, "newcomer") == after_newcomer
            assert _recs(fresh, "fan") == after_fan
        finally:
            fresh.close()
    finally:
        engine.close()


def _traffic(rng: random.Random, round_: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    t = START + round_ * DAY
    for _ in range(40):
        s = f"u{rng.randrange(30)}"
        for step in range(rng.randint(1, 4)):
            pid = rng.randrange(40)
            events.append(view(s, f"p{pid}", t + step, category=CATEGORIES[pid % 3]))
            if rng.random() < 0.3:
                events.append(add(s, f"p{pid}", t + step + 0.5))
        if rng.random() < 0.2:
            events.append(order(s, t + 10, 20.0, [f"p{rng.randrange(40)}"]))
        if rng.random() < 0.05:
            events.append(identify(s, f"a{rng.randrange(30)}", t + 20))
    return events


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_answers_with_and_without_kept_lists_are_identical(tmp_path: Path, seed: int) -> None:
    """Rounds of random traffic written by one engine; three engines on the same file decide:
    lists kept (roomy, and tiny so the cache keeps starting over) and never kept."""
    rng = random.Random(seed)
    clock = Clock()
    data = tmp_path / "data"
    writer = _engine(data, clock)
    kept = _engine(data, clock)
    tiny = _engine(data, clock, item_cache_entries=40)
    plain = _engine(data, clock, item_cache_entries=0)
    subjects = [f"u{n}" for n in range(30)] + [f"a{n}" for n in range(5)] + ["nobody"]
    try:
        for round_ in range(4):
            writer.update(_traffic(rng, round_))
            for k in (1, 5):
                for engine in (kept, tiny, plain):
                    engine.settings = engine.settings.model_copy(update={"recommendations": k})
                want = {s: plain.decide(s, True) for s in subjects}
                assert {s: kept.decide(s, True) for s in subjects} == want
                assert {s: tiny.decide(s, True) for s in subjects} == want
                assert any(d.recommendations for d in want.values())
        store = kept._store
        assert isinstance(store, SqliteStore)
        assert store.items.resets >= 3  # each round's statistics dropped the kept lists
    finally:
        for engine in (writer, kept, tiny, plain):
            engine.close()


def test_the_cache_bound_holds() -> None:
    cache = ItemCache(max_entries=10)
    cache.check(1)
    cache.keep_ranked("pop", 100, [("a", 1.0)] * 4)
    cache.keep_neighbours("p1", [["b", 1]] * 3)
    assert cache.ranked("pop", 3) == [("a", 1.0)] * 3
    cache.keep_ranked("cat:x", 100, [("c", 1.0)] * 4)  # 5 + 4 + 5 > 10: starts over
    assert cache.ranked("pop", 3) is None
    assert cache.neighbours("p1") is None
    assert cache.ranked("cat:x", 4) == [("c", 1.0)] * 4
    cache.keep_ranked("big", 100, [("d", 1.0)] * 20)  # larger than the bound: never kept
    assert cache.ranked("big", 1) is None
    cache.check(2)
    assert cache.ranked("cat:x", 4) is None
    # A list read shorter than asked is complete; read to its limit, it may go on.
    cache.keep_ranked("pop", 5, [("a", 1.0)] * 2)
    assert cache.ranked("pop", 50) == [("a", 1.0)] * 2
    cache.keep_ranked("pop", 2, [("a", 1.0)] * 2)
    assert cache.ranked("pop", 3) is None
