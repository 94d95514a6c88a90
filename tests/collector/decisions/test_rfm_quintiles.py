"""RFM scores: quintiles of the population, each score a fifth of the customers."""

from __future__ import annotations

import pytest

from journeykit.collector.decisions._rfm import cut_points, rfm_scores


def _scores(values: list[float]) -> list[int]:
    ordered = sorted(values)
    cuts = cut_points(len(ordered), lambda _dim, rank: ordered[rank], now=0.0)
    assert cuts is not None
    return [rfm_scores(cuts, v, 0, 0.0)[0] for v in values]


@pytest.mark.parametrize("population", [5, 10, 20, 100])
def test_distinct_values_give_each_score_a_fifth(population: int) -> None:
    scores = _scores([float(v) for v in range(1, population + 1)])
    fifth = population // 5
    assert [scores.count(s) for s in range(1, 6)] == [fifth] * 5


def test_ties_share_the_lower_score() -> None:
    # Most customers order once: they all get F = 1, the repeat buyers the top scores.
    assert _scores([1, 1, 1, 1, 1, 1, 1, 2, 3, 9]) == [1, 1, 1, 1, 1, 1, 1, 4, 5, 5]


def test_a_single_customer_scores_1() -> None:
    assert _scores([7.0]) == [1]
