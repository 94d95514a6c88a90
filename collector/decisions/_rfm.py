"""RFM scores 1-5 by quintiles of the current population of customers.

Scoring a subject against every other profile per decision would cost O(population); instead
the stores keep each customer's recency (last purchase time), frequency (orders) and monetary
value (lifetime revenue in the primary currency) in an ordered index, and the 20/40/60/80th
percentiles (the cut points) are recomputed every ``rfm_refresh_seconds`` and stored beside
the profiles, so every process scores against the same cut points. A score is 1 plus the number
of cut points the value exceeds: with many ties (most customers order once) the tied values
share the lower score, as quintile RFM usually does.

A young population changes fast: a fresh store has no cut points, then cut points of a handful
of customers that a few minutes double. So cut points are also checked every
``rfm_young_refresh_seconds`` (see :func:`refresh_due`) and recomputed then when they are
missing, were computed over fewer than ``rfm_min_customers``, or the customers have grown by
more than :data:`GROWTH` since. Checks happen on a grid anchored at the cut points'
``computed_at`` (:func:`next_check`), the same for every process holding them, so processes
switch to new cut points at the same moments, as with the periodic refresh.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GROWTH",
    "CutPoints",
    "cut_points",
    "next_check",
    "quintile_ranks",
    "refresh_due",
    "rfm_scores",
]

GROWTH = 1.25
"""More customers than this times the cut points' population: recompute at the next check."""


@dataclass(frozen=True, slots=True)
class CutPoints:
    """The quintile boundaries of recency (a time), frequency and monetary value."""

    recency: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]
    population: int
    computed_at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "r": list(self.recency),
            "f": list(self.frequency),
            "m": list(self.monetary),
            "population": self.population,
            "computed_at": self.computed_at,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CutPoints:
        return cls(
            tuple(doc["r"]), tuple(doc["f"]), tuple(doc["m"]), doc["population"], doc["computed_at"]
        )


def cut_points(population: int, nth: Callable[[str, int], float], now: float) -> CutPoints | None:
    """Cut points from ``nth(dimension, rank)``, the value at ``rank`` of the sorted dimension.

    ``dimension`` is ``"r"``, ``"f"`` or ``"m"``; stores answer it from their ordered indexes.
    ``None`` when there are no customers yet.
    """
    if population == 0:
        return None
    ranks = quintile_ranks(population)

    def cuts(dim: str) -> tuple[float, ...]:
        return tuple(nth(dim, rank) for rank in ranks)

    return CutPoints(cuts("r"), cuts("f"), cuts("m"), population, now)


def quintile_ranks(population: int) -> list[int]:
    """The ranks (0-based, ascending) of the cut points in a population of ``population``.

    The last value of each of the lower four fifths: a value above it is in a higher fifth.
    (The first value of the next fifth scored a fifth of each one too low, and in a population
    of five nobody 5.)
    """
    return [max(0, population * q // 5 - 1) for q in (1, 2, 3, 4)]


def _score(cuts: Sequence[float], value: float) -> int:
    return 1 + bisect.bisect_left(cuts, value)


def rfm_scores(
    cuts: CutPoints, last_purchase: float, orders: int, monetary: float
) -> tuple[int, int, int]:
    """``(R, F, M)``, each 1-5; a later last purchase is a higher R."""
    return (
        _score(cuts.recency, last_purchase),
        _score(cuts.frequency, orders),
        _score(cuts.monetary, monetary),
    )


def refresh_due(
    cuts: CutPoints | None,
    now: float,
    refresh: float,
    young: float,
    min_customers: int,
    customers: Callable[[], int],
) -> bool:
    """Whether ``cuts`` should be recomputed at a check at ``now``.

    Always once they are ``refresh`` seconds old; before that, once they are ``young`` seconds
    old, when they are missing, cover fewer than ``min_customers`` customers, or
    ``customers()`` (the current count: one cheap query, asked only then) exceeds their
    population by more than :data:`GROWTH`.
    """
    if cuts is None:
        return True
    age = now - cuts.computed_at
    if age >= refresh:
        return True
    if age < young:
        return False
    return cuts.population < min_customers or customers() > cuts.population * GROWTH


def next_check(cuts: CutPoints | None, now: float, refresh: float, young: float) -> float:
    """When the process holding ``cuts`` at ``now`` checks them again.

    The next multiple of ``young`` after ``computed_at`` (so every process holding the same
    cut points checks at the same moments), at the latest ``computed_at + refresh``.
    """
    if cuts is None:
        return now + young
    done = cuts.computed_at
    steps = math.floor((now - done) / young) + 1
    return max(min(done + steps * young, done + refresh), now + 1e-6)
