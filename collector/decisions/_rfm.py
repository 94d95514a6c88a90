"""RFM scores 1-5 by quintiles of the current population of customers.

Scoring a subject against every other profile per decision would cost O(population); instead
the stores keep each customer's recency (last purchase time), frequency (orders) and monetary
value (lifetime revenue in the primary currency) in an ordered index, and the 20/40/60/80th
percentiles (the cut points) are recomputed every ``rfm_refresh_seconds`` and stored beside
the profiles, so every process scores against the same cut points. A score is 1 plus the number
of cut points the value exceeds: with many ties (most customers order once) the tied values
share the lower score, as quintile RFM usually does.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CutPoints", "cut_points", "rfm_scores"]


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
    ranks = [min(population - 1, population * q // 5) for q in (1, 2, 3, 4)]

    def cuts(dim: str) -> tuple[float, ...]:
        return tuple(nth(dim, rank) for rank in ranks)

    return CutPoints(cuts("r"), cuts("f"), cuts("m"), population, now)


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
