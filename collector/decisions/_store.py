"""The profile store's interface, shared by the SQLite and Redis backends.

A store keeps one JSON document per subject id: a profile, or ``{"alias": "<user id>"}`` for an
id merged into another, plus aggregate item statistics (co-occurrence, popularity) and the RFM
index. Writes happen in :meth:`ProfileStore.transact`: the store reads what the update function
asks for and applies the :class:`Changes` it returns atomically, retrying the whole function
when another process changed the same subjects meanwhile (so the function must be pure).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from journeykit.collector.decisions._rfm import CutPoints

__all__ = [
    "CandidateQuery",
    "Candidates",
    "Changes",
    "Doc",
    "ProfileStore",
    "Reader",
    "StoreUnavailable",
]

Doc = dict[str, Any]
Reader = Callable[[Collection[str]], dict[str, Doc]]
"""Reads documents by subject id inside a transaction; absent ids are left out."""


class StoreUnavailable(RuntimeError):
    """The store cannot be reached or is locked past its timeout; decisions say unavailable."""


@dataclass(slots=True)
class Changes:
    """What one request's events change, applied in one transaction."""

    docs: dict[str, Doc] = field(default_factory=dict)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)  # co-occurrence (a, b)
    popularity: Counter[str] = field(default_factory=Counter)
    category_popularity: Counter[tuple[str, str]] = field(default_factory=Counter)  # (cat, item)
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


class ProfileStore(Protocol):
    """Profiles and item statistics (module docstring); methods raise ``StoreUnavailable``."""

    def transact(self, update: Callable[[Reader], Changes]) -> Changes:
        """Run ``update`` with a reader and apply its changes atomically; returns them."""
        ...

    def fetch(self, subjects: Collection[str]) -> dict[str, Doc]:
        """The documents of ``subjects`` (aliases not followed); absent ids are left out."""
        ...

    def candidates(self, queries: Sequence[CandidateQuery]) -> list[Candidates]: ...

    def cut_points(self) -> CutPoints | None:
        """The RFM cut points every process scores against, if computed yet."""
        ...

    def refresh_cut_points(self, now: float, max_age: float) -> CutPoints | None:
        """Recompute the cut points if they are older than ``max_age`` (one process does)."""
        ...

    def forget(self, subjects: Collection[str]) -> int:
        """Erase these subjects' documents and RFM entries; returns how many existed."""
        ...

    def close(self) -> None: ...
