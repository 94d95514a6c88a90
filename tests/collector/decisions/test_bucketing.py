"""Experiment bucketing: documented, deterministic, evenly spread, 1/10,000 granularity."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from journeykit.collector.decisions import bucket
from journeykit.collector.decisions._bucketing import pick_variant


def test_bucket_is_the_documented_hash() -> None:
    digest = hashlib.sha256(b"cart_offer:user-42").digest()
    assert bucket("cart_offer", "user-42") == int.from_bytes(digest[:8], "big") % 10_000


def test_bucket_is_stable_and_depends_on_key_and_subject() -> None:
    assert bucket("e", "u1") == bucket("e", "u1")
    buckets = {bucket("e", f"u{i}") for i in range(50)}
    assert len(buckets) > 40
    assert [bucket("e", f"u{i}") for i in range(50)] != [bucket("f", f"u{i}") for i in range(50)]


def test_buckets_spread_evenly() -> None:
    counts = Counter(bucket("exp", f"subject-{i}") // 1000 for i in range(20_000))
    assert set(counts) == set(range(10))
    # Each tenth expects 2,000; 5 standard deviations of a binomial are about 212.
    assert all(1_780 < n < 2_220 for n in counts.values()), counts


def test_variant_shares_follow_weights_to_one_in_ten_thousand() -> None:
    picks = Counter(pick_variant([1, 9_999], "rare", f"s{i}") for i in range(30_000))
    assert 0 < picks[0] < 15  # 1/10,000 of 30,000 is 3
    halves = Counter(pick_variant([5_000, 5_000], "half", f"s{i}") for i in range(10_000))
    assert 4_800 < halves[0] < 5_200


def test_weights_must_cover_every_bucket() -> None:
    subject = next(f"s{i}" for i in range(1000) if bucket("e", f"s{i}") >= 10)
    with pytest.raises(ValueError, match="10,000"):
        pick_variant([10], "e", subject)
