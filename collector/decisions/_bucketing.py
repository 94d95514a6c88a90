"""Deterministic experiment bucketing: the same subject always sees the same variant.

``bucket(key, subject)`` is the first 8 bytes of ``SHA-256(key + ":" + subject)`` (UTF-8), read
as a big-endian unsigned integer, modulo 10,000: a number in 0..9999, so variant weights have
1/10,000 granularity. The bias of reducing a 64-bit value modulo 10,000 is below 1e-15. Any
process, host or language computes the same bucket, and changing an experiment's key reshuffles
its subjects on purpose.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["BUCKETS", "bucket", "pick_variant"]

BUCKETS = 10_000


def bucket(key: str, subject: str) -> int:
    digest = hashlib.sha256(f"{key}:{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def pick_variant(weights: Sequence[int], key: str, subject: str) -> int:
    """The index of the variant whose slice of 0..9999 holds the subject's bucket.

    ``weights`` sum to 10,000; variant ``i`` owns the buckets from the sum of the weights
    before it up to, not including, that sum plus its own weight.
    """
    b = bucket(key, subject)
    edge = 0
    for index, weight in enumerate(weights):
        edge += weight
        if b < edge:
            return index
    raise ValueError("weights must sum to 10,000")
