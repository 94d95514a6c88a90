"""The profile store's interface, shared by the SQLite and Redis backends.

A store keeps one JSON document per subject id: a profile, or ``{"alias": "<user id>"}`` for an
id merged into another, plus aggregate item statistics (co-occurrence, popularity) and the RFM
index. Writes happen in :meth:`ProfileStore.transact`: the store reads what the update function
asks for and applies the :class:`Changes` it returns atomically, retrying the whole function
when another process changed the same subjects meanwhile (so the function must be pure).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from journeykit.collector.decisions._rfm import CutPoints

__all__ = [
    "MAX_ALIAS_HOPS",
    "RELATED_KEEP",
    "CandidateQuery",
    "Candidates",
    "Changes",
    "Doc",
    "ItemLists",
    "ItemStats",
    "ProfileStore",
    "Reader",
    "StoreUnavailable",
    "Weights",
    "add_weights",
    "from_lists",
    "top_neighbours",
]

Doc = dict[str, Any]
Reader = Callable[[Collection[str]], dict[str, Doc]]
"""Reads documents by subject id inside a transaction; absent ids are left out."""


class StoreUnavailable(RuntimeError):
    """The store cannot be reached or is locked past its timeout; decisions say unavailable."""


Weights = dict[str, dict[str, int]]
"""``{key: {item: weight}}``: co-occurrence by item, popularity by category."""


def add_weights(into: Weights, other: Weights) -> None:
    """Sum ``other``'s nested weights into ``into``."""
    for key, items in other.items():
        mine = into.get(key)
        if mine is None:
            into[key] = dict(items)
        else:
            for item, w in items.items():
                mine[item] = mine.get(item, 0) + w


def _absorb_flat(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    if len(a) < len(b):
        a, b = b, a
    for item, w in b.items():
        a[item] = a.get(item, 0) + w
    return a


def _absorb_weights(a: Weights, b: Weights) -> Weights:
    if len(a) < len(b):
        a, b = b, a
    for key, items in b.items():
        mine = a.get(key)
        a[key] = items if mine is None else _absorb_flat(mine, items)
    return a


MAX_ALIAS_HOPS = 4  # an id merged into one merged into another...: followed this far

RELATED_KEEP = 100
"""Neighbours kept per product: its heaviest co-occurring products (see docs/decisions.md)."""


def top_neighbours(stored: list[list[Any]] | None, more: dict[str, int]) -> list[list[Any]]:
    """``stored`` ``[[item, weight], ...]`` plus ``more``, heaviest first, cut to the bound.

    Ties go by item, descending: the order of a Redis sorted set read from the top, so both
    stores keep and return the same neighbours.
    """
    merged: dict[str, float] = dict(more)
    for item, w in stored or ():
        merged[item] = merged.get(item, 0) + w
    ranked = sorted(merged.items(), key=lambda p: (p[1], p[0]), reverse=True)
    return [[item, w] for item, w in ranked[:RELATED_KEEP]]


@dataclass(slots=True)
class ItemStats:
    """Item statistics: sums, so increments aggregate in any order before they are written."""

    related: Weights = field(default_factory=dict)  # item -> {co-occurring item: weight}
    popularity: dict[str, int] = field(default_factory=dict)
    category_popularity: Weights = field(default_factory=dict)  # category -> {item: weight}

    def __len__(self) -> int:
        """Increments to write: one per related pair, popular item, category item."""
        related = sum(map(len, self.related.values()))
        return related + len(self.popularity) + sum(map(len, self.category_popularity.values()))

    def add(self, other: ItemStats) -> None:
        add_weights(self.related, other.related)
        add_weights(self.category_popularity, other.category_popularity)
        pop = self.popularity
        for item, w in other.popularity.items():
            pop[item] = pop.get(item, 0) + w

    def absorb(self, other: ItemStats) -> None:
        """:meth:`add` that takes ``other``'s dicts over instead of copying them.

        ``other`` must not be used afterwards (a flush's own statistics, summed into the
        pending ones): at each level the smaller side is summed into the larger, so summing
        one flush into a large pending total costs the size of the flush, and the first flush
        after a write costs nothing.
        """
        self.related = _absorb_weights(self.related, other.related)
        self.category_popularity = _absorb_weights(
            self.category_popularity, other.category_popularity
        )
        self.popularity = _absorb_flat(self.popularity, other.popularity)

    def clear(self) -> None:
        self.related.clear()
        self.popularity.clear()
        self.category_popularity.clear()


@dataclass(slots=True)
class Changes:
    """What one flush's events change, applied in one transaction."""

    docs: dict[str, Doc] = field(default_factory=dict)
    stats: ItemStats = field(default_factory=ItemStats)
    # subject -> (last purchase time, orders, revenue in the primary currency); None: remove.
    customers: dict[str, tuple[float, int, float] | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CandidateQuery:
    """Where to look for recommendations for one subject."""

    seeds: Sequence[str]  # products the subject looked at, most relevant first
    categories: Sequence[str]
    limit: int


@dataclass(slots=True)
class Candidates:
    related: list[tuple[str, float]] = field(default_factory=list)  # summed over seeds
    in_category: list[tuple[str, float]] = field(default_factory=list)
    popular: list[tuple[str, float]] = field(default_factory=list)


ItemLists = dict[str, tuple[int, list[tuple[str, float]]]]
"""Prefetched item lists, ``"co:<item>"``, ``"cat:<category>"`` or ``"pop"`` -> (the length
asked, the heaviest items first): a list shorter than asked is complete."""


def from_lists(lists: ItemLists, key: str, limit: int) -> list[tuple[str, float]] | None:
    """The first ``limit`` items of a prefetched list, or ``None`` if it cannot say them."""
    found = lists.get(key)
    if found is None:
        return None
    asked, items = found
    if asked < limit and len(items) == asked:
        return None  # fetched shorter than needed and there may be more
    return items[:limit]


class ProfileStore(Protocol):
    """Profiles and item statistics (module docstring); methods raise ``StoreUnavailable``."""

    stats_batch_limit: int
    """Pending item-statistic increments written early, before ``stats_flush_seconds``."""

    local: bool
    """Whether reads touch only local files, no network round trip: brief enough that the
    collector decides a batch's subjects on its event loop instead of handing them over."""

    def transact(self, update: Callable[[Reader], Changes]) -> Changes:
        """Run ``update`` with a reader and apply its changes atomically; returns them."""
        ...

    def fetch(self, subjects: Collection[str]) -> dict[str, Doc]:
        """The documents of ``subjects`` (aliases not followed); absent ids are left out."""
        ...

    def fetch_for_decisions(
        self, subjects: Collection[str], seeds: Collection[str], categories: Collection[str], k: int
    ) -> tuple[dict[str, Doc], ItemLists]:
        """The documents of ``subjects`` and of the ids their aliases point to, and item lists
        the recommendations will likely need (the documents' seeds and top categories, plus
        ``seeds`` and ``categories``): one round trip where the store is remote."""
        ...

    def candidates(
        self, queries: Sequence[CandidateQuery], lists: ItemLists | None = None
    ) -> list[Candidates]:
        """Recommendation candidates; what ``lists`` holds already is not read again."""
        ...

    def cut_points(self) -> CutPoints | None:
        """The RFM cut points every process scores against, if computed yet."""
        ...

    def customer_count(self) -> int:
        """How many customers the RFM index holds now (one cheap query)."""
        ...

    def refresh_cut_points(self, now: float, max_age: float) -> CutPoints | None:
        """Recompute the cut points if they are older than ``max_age`` (one process does)."""
        ...

    def forget(self, subjects: Collection[str]) -> int:
        """Erase these subjects' documents and RFM entries; returns how many existed."""
        ...

    def clear(self) -> None:
        """Erase every profile, item statistic and RFM entry (before a rebuild)."""
        ...

    def close(self) -> None: ...
