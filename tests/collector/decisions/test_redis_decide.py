"""The Redis decision script returns only what rank() can reach, and answers as SQLite does.

The script cuts each recommendation list after the entries a top-K ranking can use (K plus
the products excluded, ties at the cut kept); these tests pin that the cut changes no answer
(against SQLite, which reads whole lists) and that a stored subject's decision needs nothing
beyond the script's one round trip.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from decisions_helpers import DAY, HOUR, Clock, add, identify, order, view

from journeykit.collector.decisions import DecisionEngine, DecisionSettings, load_rules
from journeykit.collector.decisions._engine import open_store
from journeykit.collector.decisions._recommend import query_for, rank
from journeykit.collector.decisions._store import ProfileStore

PRODUCTS = 80
CATEGORIES = ("shoes", "hats", "bags", "socks")


def _pid(n: int) -> str:
    # Ties are broken by product id in code point order; Lua's `<` would follow the locale.
    return ("p", "é", "Z", "Ω")[n % 4] + str(n)


def _traffic(rng: random.Random, now: float, subjects: int) -> list[dict[str, Any]]:
    """Sessions of views (co-occurrence), adds left in carts, orders, logins, heavy buyers."""
    events: list[dict[str, Any]] = []
    for n in range(subjects):
        s = f"u{n}"
        t = now - rng.uniform(1, 20) * DAY
        for step in range(rng.randint(1, 7)):
            pid = rng.randrange(PRODUCTS)
            cat = CATEGORIES[pid % len(CATEGORIES)]
            events.append(view(s, _pid(pid), t + 60 * step, category=cat))
            if rng.random() < 0.3:
                events.append(add(s, _pid(pid), t + 60 * step + 1))
        if rng.random() < 0.3:
            bought = [_pid(rng.randrange(PRODUCTS)) for _ in range(rng.randint(1, 3))]
            events.append(order(s, t + HOUR, 30.0, bought))
        if rng.random() < 0.1:
            events.append(identify(s, f"anon-{n}", t + 2 * HOUR))
    # Buys more products than the limit's cap (50): the script cuts nothing for them.
    heavy = [_pid(i) for i in range(60)]
    events.append(order("heavy", now - DAY, 600.0, heavy))
    events += [view("heavy", _pid(i), now - HOUR + i) for i in (61, 62, 63)]
    return events


@pytest.fixture
def stores(redis_url: str) -> Iterator[dict[str, DecisionSettings]]:
    prefix = f"rd{random.randrange(1 << 30)}:"
    yield {
        "sqlite": DecisionSettings(flush_interval_seconds=3600.0, stats_flush_seconds=3600.0),
        "redis": DecisionSettings(
            backend="redis",
            redis_url=redis_url,
            redis_prefix=prefix,
            flush_interval_seconds=3600.0,
            stats_flush_seconds=3600.0,
        ),
    }
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


def _engines(
    stores: dict[str, DecisionSettings], tmp_path: Path, clock: Clock, k: int
) -> list[DecisionEngine]:
    out = []
    for settings in stores.values():
        chosen = settings.model_copy(update={"recommendations": k})
        out.append(DecisionEngine(open_store(chosen, tmp_path), load_rules(None), chosen, clock))
    return out


@pytest.mark.parametrize("k", [1, 3, 8])
def test_redis_answers_as_sqlite_with_lists_longer_than_k(
    stores: dict[str, DecisionSettings], tmp_path: Path, clock: Clock, k: int
) -> None:
    rng = random.Random(k)
    engines = _engines(stores, tmp_path / f"k{k}", clock, k)
    try:
        for engine in engines:
            engine.update(_traffic(random.Random(k), clock.now, 120))
            assert engine.flush()
        subjects = [f"u{n}" for n in range(120)] + ["anon-3", "heavy", "newcomer"]
        stored = [e.decide_many(subjects, dict.fromkeys(subjects, True)) for e in engines]
        assert stored[0] == stored[1]
        recs = [d.recommendations for d in stored[1].values()]
        assert any(len(r) == k and r[0].source == "co_occurrence" for r in recs)
        # Queued events change carts, purchases and seeds: the client's query then differs
        # from the stored documents' and the script's per-list reads answer.
        more = []
        for n in rng.sample(range(120), 30):
            pid = _pid(rng.randrange(PRODUCTS))
            more += [view(f"u{n}", pid, clock.now - 60), add(f"u{n}", pid, clock.now - 30)]
        more.append(order("u5", clock.now - 10, 20.0, [_pid(1), _pid(2)]))
        for engine in engines:
            engine.update(more)
        queued = [e.decide_many(subjects, dict.fromkeys(subjects, True)) for e in engines]
        assert queued[0] == queued[1]
        assert queued[1] != stored[1]
    finally:
        for engine in engines:
            engine.close()


def _store(settings: DecisionSettings, tmp_path: Path) -> ProfileStore:
    return open_store(settings, tmp_path)


def test_a_stored_subjects_candidates_come_with_its_documents(
    stores: dict[str, DecisionSettings], tmp_path: Path, clock: Clock, redis_url: str
) -> None:
    settings = stores["redis"]
    (engine,) = _engines({"redis": settings}, tmp_path, clock, 2)
    engine.update(_traffic(random.Random(1), clock.now, 80))
    assert engine.flush()
    engine.close()
    store = _store(settings, tmp_path)
    try:
        answers = {}
        for subject in ("u1", "u2", "u3", "heavy", "newcomer"):
            docs, lists = store.fetch_for_decisions([subject], [], [], 2)
            profile = docs.get(subject, {})
            query = query_for(profile, 2)
            whole = store.candidates([query])[0]
            answers[subject] = (profile, query, lists, rank(profile, whole, 2), whole)
        # Everything the item lists said is gone: candidates must come from the script's answer.
        client = redis.Redis.from_url(redis_url)
        for pattern in ("co:*", "cat:*", "pop"):
            keys = list(client.scan_iter(match=f"{settings.redis_prefix}{pattern}"))
            if keys:
                client.delete(*keys)
        for subject, (profile, query, lists, expected, whole) in answers.items():
            found = store.candidates([query], lists)[0]
            assert rank(profile, found, 2) == expected, subject
            assert expected, subject  # the traffic gives everyone recommendations
            cut = len(found.related) + len(found.in_category) + len(found.popular)
            full = len(whole.related) + len(whole.in_category) + len(whole.popular)
            assert cut <= full
            if subject not in ("heavy", "newcomer"):  # over the cap, or nothing to cut
                assert cut < full, subject
    finally:
        store.close()
