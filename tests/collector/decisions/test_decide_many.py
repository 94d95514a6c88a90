"""``decide_many`` answers what deciding each subject alone answers, on both backends.

A batch of GET /v1/decisions requests is decided in one call (one store read, one Redis round
trip): random traffic with carts, orders, logins, consent records and unknown visitors, asked
in random batches (repeats included) with random consent, queued and written.
"""

from __future__ import annotations

import random
from typing import Any

from decisions_helpers import DAY, START, EngineFactory, add, consent, identify, order, view

CATEGORIES = ("shoes", "hats", "bags", "socks")


def _traffic(rng: random.Random, now: float) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for n in range(40):
        s = f"u{n}"
        t = now - rng.uniform(0.1, 10) * DAY
        for step in range(rng.randint(1, 6)):
            pid = rng.randrange(30)
            events.append(view(s, f"p{pid}", t + 60 * step, category=CATEGORIES[pid % 4]))
            if rng.random() < 0.3:
                events.append(add(s, f"p{pid}", t + 60 * step + 1))
        if rng.random() < 0.3:
            events.append(order(s, t + 600, rng.uniform(10, 300), [f"p{rng.randrange(30)}"]))
        if rng.random() < 0.15:
            events.append(identify(s, f"anon-{n}", t + 900))
        if rng.random() < 0.2:
            events.append(consent(s, t + 30, rng.random() < 0.5))
    return events


def test_many_decides_like_one_by_one(make_engine: EngineFactory, mode: str) -> None:
    rng = random.Random(42)
    engine = make_engine()
    pool = [f"u{n}" for n in range(40)] + [f"anon-{n}" for n in range(40)] + ["new-1", "new-2"]
    for round_ in range(3):
        engine.update(_traffic(rng, START + round_ * DAY))
        if mode == "queued" and round_ == 1:
            engine.flush()  # stored profiles plus a queue on top
        for _ in range(12):
            asked = [rng.choice(pool) for _ in range(rng.randint(1, 8))]
            granted = {s: rng.random() < 0.8 for s in asked if rng.random() < 0.7}
            together = engine.decide_many(asked, granted)
            alone = {s: engine.decide(s, granted.get(s)) for s in asked}
            assert together == alone
            assert set(together) == set(asked)
        assert engine.available
    decided = engine.decide_many(pool, None)
    assert {d.personalization for d in decided.values()} == {"granted", "not_consented"}
    assert any(d.recommendations for d in decided.values())
