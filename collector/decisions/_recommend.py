"""Top-K product recommendations: related items first, then the subject's categories, then
what is popular, never what the subject already bought or has in the cart.

"Related" is item-to-item co-occurrence kept incrementally by the stores: two products viewed
by one subject within ``session_seconds`` of each other gain 1, two products bought in one
order gain 3 (buying together says more than looking). The seeds are the subject's most
recently viewed products and the cart; a candidate's score is its summed weight over seeds.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Literal

from journeykit.collector.decisions._profile import MAX_BOUGHT, MAX_CART, Profile
from journeykit.collector.decisions._store import CandidateQuery, Candidates
from journeykit.sdk._decision import Recommendation

__all__ = ["EXTRA", "query_for", "rank"]

Source = Literal["co_occurrence", "category", "popular"]

SEEDS = 5
CATEGORIES = 2
# Candidates fetched beyond K: as many as rank() may skip (bought, in the cart) plus the seeds,
# capped only for documents past the profile bounds. A cap below that left a customer who had
# bought most of the popular products with no recommendations.
EXTRA = MAX_BOUGHT + 2 * MAX_CART + SEEDS


_ITEM, _SCORE = itemgetter(0), itemgetter(1)


def _excluded(profile: Profile) -> set[str]:
    return set(profile.get("bought", ())) | set(profile.get("cart", {}))


def query_for(profile: Profile, k: int) -> CandidateQuery:
    recent = [r[0] for r in reversed(profile.get("recent", []))]
    seeds = list(dict.fromkeys(recent[:SEEDS] + list(profile.get("cart", {}))))
    cats = profile.get("cats", {})
    top = sorted(cats, key=lambda c: (-cats[c], c))[:CATEGORIES]
    limit = k + min(len(_excluded(profile)) + len(seeds), EXTRA)
    return CandidateQuery(seeds=seeds, categories=top, limit=limit)


def rank(profile: Profile, found: Candidates, k: int) -> list[Recommendation]:
    skip = _excluded(profile)
    out: list[Recommendation] = []
    taken: set[str] = set()
    sources: tuple[tuple[Source, list[tuple[str, float]]], ...] = (
        ("co_occurrence", found.related),
        ("category", found.in_category),
        ("popular", found.popular),
    )
    for source, pairs in sources:
        if len(out) == k:
            return out
        # Heaviest first, ties by item: two stable sorts on C keys, not a tuple per pair.
        ordered = sorted(sorted(pairs, key=_ITEM), key=_SCORE, reverse=True)
        for item, score in ordered:
            if len(out) == k:
                return out
            if item in skip or item in taken:
                continue
            taken.add(item)
            out.append(Recommendation(product_id=item, score=round(score, 3), source=source))
    return out
