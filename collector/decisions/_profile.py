"""A profile document: the traits computed from one subject's events, and how events change it.

A profile is a plain JSON-ready dict, so that both stores keep it as one value (one read and
one write per subject per flush) and compute it with this same code, hence give the same
answers. Times are whole Unix seconds. Fields, each with a bound so that a document stays small
(typically 0.3-2 KB; see ``docs/decisions.md``) whatever the history:

``first_seen``/``last_seen``; ``c``: event counts by name, ``{name: [lifetime, days, hours]}``
where ``days``/``hours`` are flat ``[index, count, index, count, ...]`` lists in ascending order
of day (``ts // 86400``, last 31 days) and hour (``ts // 3600``, last 49 hours), at most
:data:`MAX_EVENT_NAMES` names (later names count under :data:`OTHER_EVENTS`); ``views``,
``adds``, ``units`` (products bought), ``orders``, ``reviews``; ``rev`` (revenue per currency);
``first_purchase``, ``last_purchase``, ``last_add``, ``last_review``; ``cats`` (category
scores, top :data:`MAX_CATEGORIES`); ``cart`` (product id -> [quantity, unit price, currency],
at most :data:`MAX_CART` lines); ``bought`` (product ids, newest last, :data:`MAX_BOUGHT`);
``recent`` (recently viewed ``[product id, time]``, newest last, :data:`MAX_RECENT`);
``consent`` (personalization: true, false or absent).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "DAY_BUCKETS",
    "HOUR_BUCKETS",
    "MAX_BOUGHT",
    "MAX_CART",
    "MAX_CATEGORIES",
    "MAX_EVENT_NAMES",
    "MAX_RECENT",
    "OTHER_EVENTS",
    "Profile",
    "count_event",
    "merge_profiles",
    "new_profile",
    "order_lines",
    "order_value",
    "product_id",
    "prune",
    "prune_counts",
]

Profile = dict[str, Any]

# A window of N hours or days counts the current bucket and the N whole ones before it, so
# that nothing inside the window is missed: 48 hours and 30 days at most.
HOUR_BUCKETS = 49
DAY_BUCKETS = 31
MAX_BOUGHT = 100
MAX_RECENT = 10
MAX_CATEGORIES = 20
MAX_CART = 50
MAX_EVENT_NAMES = 24
OTHER_EVENTS = "(other)"  # where event names beyond MAX_EVENT_NAMES are counted

# Category interest: a purchase says more than an add, an add more than a view.
VIEW_WEIGHT, ADD_WEIGHT, PURCHASE_WEIGHT = 1.0, 2.0, 3.0


def new_profile(now: int) -> Profile:
    return {"first_seen": now, "last_seen": now, "c": {}}


def product_id(props: Mapping[str, Any]) -> str | None:
    """The product id of a product or product-event properties (``product_id``, else ``sku``)."""
    value = props.get("product_id")
    if type(value) is str and value:  # the common case first: this runs for every product
        return value
    for key in ("product_id", "sku", "id"):
        value = props.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


MAX_AMOUNT = 1e12
"""The largest price or order value counted: sums of larger ones could overflow to infinity,
which JSON cannot store, and one such event would then fail every write of the store."""
MAX_QUANTITY = 1_000_000
"""The largest quantity counted: sums of larger ones could pass 64 bits, likewise."""


def number(value: Any) -> float:
    """A finite number as a float (at most ``MAX_AMOUNT`` either way), else 0."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return max(-MAX_AMOUNT, min(float(value), MAX_AMOUNT))
    return 0.0


def quantity(props: Mapping[str, Any]) -> int:
    q = props.get("quantity")
    if type(q) is int and q > 0:
        return min(q, MAX_QUANTITY)
    return 1


def currency(props: Mapping[str, Any], primary: str) -> str:
    cur = props.get("currency")
    return cur.upper() if isinstance(cur, str) and len(cur) == 3 else primary


def order_lines(props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(product id, product)`` for each product of an order-like event with an id."""
    products = props.get("products")
    if not isinstance(products, list):
        return
    for item in products:
        if isinstance(item, dict):
            pid = product_id(item)
            if pid is not None:
                yield pid, item


def order_value(props: Mapping[str, Any]) -> float:
    """An order's value: ``total``, else ``revenue``, else ``value``, else the sum of its lines."""
    for key in ("total", "revenue", "value"):
        value = props.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return number(value)
    return min(sum(number(p.get("price")) * quantity(p) for _, p in order_lines(props)), MAX_AMOUNT)


def _bump(series: list[int], index: int) -> None:
    """Add one at ``index`` of a flat ascending ``[index, count, ...]`` list."""
    if series:
        last = series[-2]
        if last == index:  # the common case: events arrive in time order
            series[-1] += 1
            return
        if last > index:
            for i in range(len(series) - 2, -1, -2):
                if series[i] == index:
                    series[i + 1] += 1
                    return
                if series[i] < index:
                    series[i + 2 : i + 2] = [index, 1]
                    return
            series[0:0] = [index, 1]
            return
    series.append(index)
    series.append(1)


def count_event(counts: dict[str, list[Any]], name: str, ts: int, day0: int, hour0: int) -> None:
    """Count ``name`` at ``ts``; ``day0``/``hour0`` are the oldest day and hour still kept."""
    entry = counts.get(name)
    if entry is None:
        if len(counts) >= MAX_EVENT_NAMES:
            name = OTHER_EVENTS
            entry = counts.get(name)
        if entry is None:
            entry = counts[name] = [0, [], []]
    entry[0] += 1
    day = ts // 86400
    if day >= day0:
        days = entry[1]
        if days and days[-2] == day:  # inline: the common case, events in time order
            days[-1] += 1
        else:
            _bump(days, day)
        hour = ts // 3600
        if hour >= hour0:
            hours = entry[2]
            if hours and hours[-2] == hour:
                hours[-1] += 1
            else:
                _bump(hours, hour)


def oldest_kept(now: int) -> tuple[int, int]:
    """The oldest day and hour index inside the rolling windows at ``now``."""
    return now // 86400 - DAY_BUCKETS + 1, now // 3600 - HOUR_BUCKETS + 1


def _drop_before(series: list[int], index: int) -> None:
    cut = 0
    while cut < len(series) and series[cut] < index:
        cut += 2
    if cut:
        del series[:cut]


def prune(profile: Profile, now: int) -> None:
    """Drop counts that fell out of every window (called once per profile per write)."""
    prune_counts(profile["c"], *oldest_kept(now))


def prune_counts(counts: dict[str, list[Any]], day0: int, hour0: int) -> None:
    """:func:`prune` of a profile's counts given its :func:`oldest_kept` day and hour."""
    for entry in counts.values():
        days, hours = entry[1], entry[2]
        if days and days[0] < day0:
            _drop_before(days, day0)
        if hours and hours[0] < hour0:
            _drop_before(hours, hour0)


def bump_category(profile: Profile, category: Any, weight: float) -> None:
    if type(category) is not str or not category:
        return
    cats = profile.get("cats")
    if cats is None:
        cats = profile["cats"] = {}
    cats[category] = cats.get(category, 0.0) + weight
    if len(cats) > MAX_CATEGORIES:
        del cats[min(cats, key=cats.__getitem__)]


def _merge_series(a: list[int], b: list[int]) -> list[int]:
    merged: dict[int, int] = {}
    for series in (a, b):
        for i in range(0, len(series), 2):
            merged[series[i]] = merged.get(series[i], 0) + series[i + 1]
    return [x for index in sorted(merged) for x in (index, merged[index])]


def _merge_counts(user: dict[str, list[Any]], anon: dict[str, list[Any]]) -> dict[str, list[Any]]:
    out = {name: [e[0], list(e[1]), list(e[2])] for name, e in user.items()}
    for name, entry in anon.items():
        if name not in out and len(out) >= MAX_EVENT_NAMES:
            name = OTHER_EVENTS
        mine = out.get(name)
        if mine is None:
            out[name] = [entry[0], list(entry[1]), list(entry[2])]
        else:
            out[name] = [
                mine[0] + entry[0],
                _merge_series(mine[1], entry[1]),
                _merge_series(mine[2], entry[2]),
            ]
    return out


def _add_amounts(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        into[key] = into.get(key, 0) + value


def merge_profiles(user: Profile, anon: Profile) -> Profile:
    """``user`` with ``anon`` folded in: what a visitor did before logging in counts."""
    out: Profile = dict(user)
    out["first_seen"] = min(user["first_seen"], anon["first_seen"])
    out["last_seen"] = max(user["last_seen"], anon["last_seen"])
    out["c"] = _merge_counts(user["c"], anon["c"])
    for key in ("rev", "cats"):
        combined = dict(user.get(key, {}))
        _add_amounts(combined, anon.get(key, {}))
        if key == "cats":
            top = sorted(combined, key=lambda c: (-combined[c], c))[:MAX_CATEGORIES]
            combined = {c: combined[c] for c in top}
        if combined:
            out[key] = combined
    for key in ("views", "adds", "units", "orders", "reviews"):
        if key in anon:
            out[key] = user.get(key, 0) + anon[key]
    for key in ("last_purchase", "last_add", "last_review"):
        if key in anon:
            out[key] = max(user.get(key, -math.inf), anon[key])
    if "first_purchase" in anon:
        out["first_purchase"] = min(user.get("first_purchase", math.inf), anon["first_purchase"])
    cart = {k: list(v) for k, v in anon.get("cart", {}).items()}
    for pid, line in user.get("cart", {}).items():
        if pid in cart:
            cart[pid][0] += line[0]
        else:
            cart[pid] = list(line)
    if cart:
        out["cart"] = dict(list(cart.items())[-MAX_CART:])
    bought = [p for p in anon.get("bought", []) if p not in user.get("bought", [])]
    if bought or "bought" in user:
        out["bought"] = (bought + user.get("bought", []))[-MAX_BOUGHT:]
    recent = sorted(anon.get("recent", []) + user.get("recent", []), key=lambda r: r[1])
    if recent:
        seen: dict[str, list[Any]] = {}
        for item in recent:
            seen.pop(item[0], None)
            seen[item[0]] = item
        out["recent"] = list(seen.values())[-MAX_RECENT:]
    if "consent" not in user and "consent" in anon:
        out["consent"] = anon["consent"]
    return out
