"""Item lists kept in the process between writes of the item statistics.

Co-occurrence neighbours, popular and per-category lists change only when a flush writes item
statistics (every ``stats_flush_seconds``), yet a decision reads up to eight of them. The
SQLite store keeps what it read here, tagged with the store's item generation (a counter every
item-statistics write bumps in the same transaction): a read checks the generation once (one
primary-key SELECT), and when another process or this one wrote new statistics, everything
kept is dropped and read again. So every process answers from what the store holds.

The cache is bounded by the entries it holds (``max_entries``, about 150 bytes each); past it,
it starts over. Lists are fetched at least ``FETCH`` long, so one read serves every limit a
query can ask (K + up to 50).
"""

from __future__ import annotations

from typing import Any

from journeykit.collector.decisions._store import from_lists

__all__ = ["FETCH", "ItemCache"]

FETCH = 100
"""Entries read per popular or category list: the longest limit a query asks (K <= 50, + 50)."""

Pairs = list[tuple[str, float]]


class ItemCache:
    """Lists by key (``"pop"``, ``"cat:<category>"``) and neighbours by product, one generation.

    Not thread-safe: the store uses it under its lock.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.generation: Any = None
        self._lists: dict[str, tuple[int, Pairs]] = {}
        self._neighbours: dict[str, list[list[Any]]] = {}
        self._entries = 0
        self.resets = 0  # generations dropped (new statistics) or overflows

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def check(self, generation: Any) -> None:
        """Drop everything kept unless it was read under ``generation``."""
        if generation != self.generation:
            self._clear()
            self.generation = generation

    def _clear(self) -> None:
        if self._entries or self._lists or self._neighbours:
            self.resets += 1
        self._lists.clear()
        self._neighbours.clear()
        self._entries = 0

    def _room(self, size: int) -> bool:
        if size + 1 > self.max_entries:
            return False  # never kept; read each time
        if self._entries + size + 1 > self.max_entries:
            self._clear()
        self._entries += size + 1
        return True

    def ranked(self, key: str, limit: int) -> Pairs | None:
        """The first ``limit`` entries of a kept list, or None if it was not read that far."""
        return from_lists(self._lists, key, limit)

    def keep_ranked(self, key: str, asked: int, items: Pairs) -> None:
        if self._room(len(items)):
            self._lists[key] = (asked, items)

    def neighbours(self, item: str) -> list[list[Any]] | None:
        """A product's stored neighbour list (``[]``: none stored), or None if not kept."""
        return self._neighbours.get(item)

    def keep_neighbours(self, item: str, top: list[list[Any]]) -> None:
        if self._room(len(top)):
            self._neighbours[item] = top
