"""The traits rules can read, computed from a profile document on demand.

Scalar traits are listed in :data:`TRAITS` (name -> kind); rolling event counts are read as
``count.<window>.<event name>`` with ``<window>`` ``1h``..``48h``, ``1d``..``30d`` or ``total``
and ``*`` for all events (e.g. ``count.24h.Product Viewed``, ``count.30d.*``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from journeykit.collector.decisions._profile import DAY_BUCKETS, HOUR_BUCKETS, Profile
from journeykit.collector.decisions._rfm import CutPoints, rfm_scores

__all__ = ["TRAITS", "Currency", "TraitKind", "Traits", "check_trait"]

TraitKind = Literal["time", "number", "text", "bool"]

TRAITS: dict[str, TraitKind] = {
    "first_seen": "time",
    "last_seen": "time",
    "first_purchase": "time",
    "last_purchase": "time",
    "last_add": "time",
    "last_review": "time",
    "orders": "number",
    "units": "number",
    "product_views": "number",
    "adds": "number",
    "reviews": "number",
    "revenue": "number",
    "aov": "number",
    "cart_items": "number",
    "cart_value": "number",
    "rfm_r": "number",
    "rfm_f": "number",
    "rfm_m": "number",
    "rfm": "text",
    "top_category": "text",
    "currency": "text",
    "personalization": "bool",
}

_MISSING: Any = object()
_COUNT = re.compile(r"^count\.(total|(\d+)([hd]))\.(.+)$")


def _window_ok(amount: str | None, unit: str | None) -> bool:
    if amount is None or unit is None:
        return True  # "total"
    limit = (HOUR_BUCKETS if unit == "h" else DAY_BUCKETS) - 1
    return 1 <= int(amount) <= limit


def check_trait(name: str) -> TraitKind:
    """The kind of trait ``name``; raises ``ValueError`` naming what is wrong."""
    if name in TRAITS:
        return TRAITS[name]
    match = _COUNT.match(name)
    if match is None:
        known = ", ".join(sorted(TRAITS))
        raise ValueError(f"unknown trait {name!r}; known: {known}, count.<window>.<event>")
    if not _window_ok(match[2], match[3]):
        raise ValueError(
            f"window of {name!r} out of range: 1h..{HOUR_BUCKETS - 1}h or 1d..{DAY_BUCKETS - 1}d"
        )
    return "number"


@dataclass(frozen=True, slots=True)
class Currency:
    """Revenue thresholds are in ``primary``; ``rates`` convert other currencies into it."""

    primary: str
    rates: Mapping[str, float]

    def rates_any(self, amounts: Mapping[str, float]) -> bool:
        """Whether any of ``amounts`` is in a currency this can convert."""
        return any(cur == self.primary or cur in self.rates for cur in amounts)

    def convert(self, amounts: Mapping[str, float]) -> float:
        """The sum in the primary currency; amounts with no rate are left out (docs say so)."""
        total = 0.0
        for cur, amount in amounts.items():
            rate = 1.0 if cur == self.primary else self.rates.get(cur)
            # A stored sum is a number; one written as null (infinity, before amounts were
            # bounded) counts as nothing rather than failing every decision of its owner.
            if rate is not None and isinstance(amount, int | float):
                total += amount * rate
        return total


class Traits:
    """Lazy, cached trait values of one profile at one moment."""

    __slots__ = ("_cache", "_cuts", "_money", "_now", "_p")

    def __init__(self, profile: Profile, now: float, money: Currency, cuts: CutPoints | None):
        self._p = profile
        self._now = now
        self._money = money
        self._cuts = cuts
        self._cache: dict[str, Any] = {}

    @property
    def now(self) -> float:
        return self._now

    def get(self, name: str) -> Any:
        # Not try/except KeyError: each trait misses once per decision, and a raised
        # KeyError costs more than the lookup.
        value = self._cache.get(name, _MISSING)
        if value is _MISSING:
            value = self._cache[name] = self._compute(name)
        return value

    def _compute(self, name: str) -> Any:
        p = self._p
        if name in ("first_seen", "last_seen", "first_purchase", "last_purchase"):
            return p.get(name)
        if name in ("last_add", "last_review"):
            return p.get(name)
        if name in ("orders", "units", "adds", "reviews"):
            return p.get(name, 0)
        if name == "product_views":
            return p.get("views", 0)
        if name == "revenue":
            rev = p.get("rev", {})
            if rev and not self._money.rates_any(rev):
                # All of it in currencies without a rate: an unknown value, which meets no
                # threshold, rather than 0, which would make a big spender "value_low".
                return None
            return round(self._money.convert(rev), 2)
        if name == "aov":
            orders = p.get("orders", 0)
            revenue = self.get("revenue")
            if revenue is None:
                return None
            return round(revenue / orders, 2) if orders else 0.0
        if name == "cart_items":
            return sum(line[0] for line in p.get("cart", {}).values())
        if name == "cart_value":
            value = self._money.convert(_cart_amounts(p.get("cart", {})))
            return round(value, 2)
        if name in ("rfm_r", "rfm_f", "rfm_m", "rfm"):
            r, f, m = self._rfm()
            scores = {"rfm_r": r, "rfm_f": f, "rfm_m": m}
            return scores.get(name, f"{r}{f}{m}" if r else "")
        if name == "top_category":
            cats = p.get("cats", {})
            return max(sorted(cats), key=cats.__getitem__) if cats else None
        if name == "currency":
            return self._money.primary
        if name == "personalization":
            return p.get("consent") is True
        return self._counted(name)

    def _rfm(self) -> tuple[int, int, int]:
        p = self._p
        if not p.get("orders") or self._cuts is None:
            return (0, 0, 0)
        monetary = self._money.convert(p.get("rev", {}))
        return rfm_scores(self._cuts, p["last_purchase"], p["orders"], monetary)

    def _counted(self, name: str) -> int:
        event, window = _count_trait(name)
        counts: Mapping[str, list[Any]] = self._p.get("c", {})
        entries = counts.values() if event == "*" else [counts[event]] if event in counts else []
        if window is None:
            return sum(entry[0] for entry in entries)
        amount, size, column = window
        # The current bucket and ``amount`` whole ones before it: everything of the window,
        # and of up to one bucket more (what shared the oldest bucket with its start).
        oldest = int(self._now // size) - amount
        total = 0
        for entry in entries:
            series = entry[column]
            for i in range(len(series) - 2, -1, -2):  # newest last: stop at the window's start
                if series[i] < oldest:
                    break
                total += series[i + 1]
        return total


@lru_cache(maxsize=1024)
def _count_trait(name: str) -> tuple[str, tuple[int, int, int] | None]:
    """``(event, (buckets, bucket seconds, column) or None for total)`` of a count trait.

    Parsed once per name (rules name a handful): the regex cost a tenth of a decision's rules.
    """
    match = _COUNT.match(name)
    if match is None:
        raise KeyError(name)
    if match[1] == "total":
        return match[4], None
    size, column = (3600, 2) if match[3] == "h" else (86400, 1)
    return match[4], (int(match[2]), size, column)


def _cart_amounts(cart: Mapping[str, list[Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for qty, price, cur in cart.values():
        out[cur] = out.get(cur, 0.0) + qty * price
    return out
