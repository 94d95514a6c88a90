"""A profile document: the traits computed from one subject's events, and how events change it.

A profile is a plain JSON-ready dict so that both stores keep it as one value (one read and one
write per subject per request) and both compute it with this same code, hence give the same
answers. Times are Unix seconds. Fields:

``first_seen``/``last_seen``, ``h``/``d`` (event counts by name per hour for 48 hours and per
day for 31 days: the rolling windows), ``n`` (lifetime counts by name), ``views``, ``adds``,
``units`` (products bought), ``orders``, ``rev`` (revenue per currency), ``first_purchase``,
``last_purchase``, ``last_add``, ``last_review``, ``reviews``, ``cats`` (category scores),
``cart`` (product id -> [quantity, unit price, currency]), ``bought`` (product ids, newest last),
``recent`` (recently viewed [product id, time], newest last), ``consent`` (personalization:
true, false or absent).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

__all__ = [
    "HOUR_BUCKETS",
    "Profile",
    "apply_event",
    "event_time",
    "merge_profiles",
    "new_profile",
    "order_lines",
    "product_id",
]

Profile = dict[str, Any]

HOUR_BUCKETS = 48
DAY_BUCKETS = 31
MAX_BOUGHT = 200
MAX_RECENT = 10
MAX_CATEGORIES = 20

# Category interest: a purchase says more than an add, an add more than a view.
_CATEGORY_WEIGHT = {"Product Viewed": 1.0, "Product Added": 2.0, "Order Completed": 3.0}


def new_profile(now: float) -> Profile:
    return {"first_seen": now, "last_seen": now, "h": {}, "d": {}, "n": {}}


def event_time(event: Mapping[str, Any], now: float) -> float:
    """The event's timestamp in Unix seconds; ``now`` when it is missing, unreadable or ahead."""
    raw = event.get("timestamp")
    if isinstance(raw, str):
        try:
            ts = datetime.fromisoformat(raw).timestamp()
        except ValueError:
            return now
        # A clock ahead of ours must not keep a profile "active" into the future.
        return ts if math.isfinite(ts) and ts <= now else now
    return now


def event_name(event: Mapping[str, Any]) -> str:
    kind = event.get("type")
    if kind == "track":
        name = event.get("event")
        return name if isinstance(name, str) else "track"
    return kind if isinstance(kind, str) else "unknown"


def product_id(props: Mapping[str, Any]) -> str | None:
    """The product id of a product or product-event properties (``product_id``, else ``sku``)."""
    for key in ("product_id", "sku", "id"):
        value = props.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def _number(value: Any, default: float = 0.0) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def _quantity(props: Mapping[str, Any]) -> int:
    q = props.get("quantity")
    if isinstance(q, int) and not isinstance(q, bool) and q > 0:
        return q
    return 1


def _props(event: Mapping[str, Any]) -> Mapping[str, Any]:
    props = event.get("properties")
    return props if isinstance(props, dict) else {}


def _currency(props: Mapping[str, Any], primary: str) -> str:
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
    """An order's value: ``total``, else ``revenue``, else the sum of its lines."""
    for key in ("total", "revenue", "value"):
        value = props.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return sum(_number(p.get("price")) * _quantity(p) for _, p in order_lines(props))


def _count(profile: Profile, name: str, ts: float, now: float) -> None:
    n = profile["n"]
    n[name] = n.get(name, 0) + 1
    hour = int(ts // 3600)
    if hour > int(now // 3600) - HOUR_BUCKETS:
        bucket = profile["h"].setdefault(str(hour), {})
        bucket[name] = bucket.get(name, 0) + 1
    day = int(ts // 86400)
    if day > int(now // 86400) - DAY_BUCKETS:
        bucket = profile["d"].setdefault(str(day), {})
        bucket[name] = bucket.get(name, 0) + 1


def prune(profile: Profile, now: float) -> None:
    """Drop buckets that fell out of every window (called once per profile per write)."""
    oldest_hour = int(now // 3600) - HOUR_BUCKETS
    for key in [k for k in profile["h"] if int(k) <= oldest_hour]:
        del profile["h"][key]
    oldest_day = int(now // 86400) - DAY_BUCKETS
    for key in [k for k in profile["d"] if int(k) <= oldest_day]:
        del profile["d"][key]


def _bump_category(profile: Profile, category: Any, weight: float) -> None:
    if not isinstance(category, str) or not category:
        return
    cats = profile.setdefault("cats", {})
    cats[category] = cats.get(category, 0.0) + weight
    if len(cats) > MAX_CATEGORIES:
        del cats[min(cats, key=cats.__getitem__)]


def _latest(profile: Profile, key: str, ts: float) -> None:
    if ts > profile.get(key, -math.inf):
        profile[key] = ts


def apply_event(
    profile: Profile, event: Mapping[str, Any], ts: float, now: float, primary: str
) -> None:
    """Fold one stored event into ``profile`` (co-occurrence and popularity are the caller's)."""
    name = event_name(event)
    profile["first_seen"] = min(profile["first_seen"], ts)
    profile["last_seen"] = max(profile["last_seen"], ts)
    _count(profile, name, ts, now)
    if name == "Product Viewed":
        _viewed(profile, _props(event), ts)
    elif name == "Product Added":
        _added(profile, _props(event), ts, primary)
    elif name == "Product Removed":
        props = _props(event)
        pid = product_id(props)
        cart = profile.get("cart", {})
        if pid is not None and pid in cart:
            cart[pid][0] -= _quantity(props)
            if cart[pid][0] <= 0:
                del cart[pid]
    elif name == "Order Completed":
        _ordered(profile, _props(event), ts, primary)
    elif name == "Order Refunded":
        props = _props(event)
        rev = profile.setdefault("rev", {})
        cur = _currency(props, primary)
        rev[cur] = max(0.0, rev.get(cur, 0.0) - order_value(props))
    elif name == "Product Reviewed":
        profile["reviews"] = profile.get("reviews", 0) + 1
        _latest(profile, "last_review", ts)


def _viewed(profile: Profile, props: Mapping[str, Any], ts: float) -> None:
    profile["views"] = profile.get("views", 0) + 1
    _bump_category(profile, props.get("category"), _CATEGORY_WEIGHT["Product Viewed"])
    pid = product_id(props)
    if pid is None:
        return
    recent = [r for r in profile.get("recent", []) if r[0] != pid]
    recent.append([pid, ts])
    profile["recent"] = recent[-MAX_RECENT:]


def _added(profile: Profile, props: Mapping[str, Any], ts: float, primary: str) -> None:
    profile["adds"] = profile.get("adds", 0) + 1
    _latest(profile, "last_add", ts)
    _bump_category(profile, props.get("category"), _CATEGORY_WEIGHT["Product Added"])
    pid = product_id(props)
    if pid is None:
        return
    cart = profile.setdefault("cart", {})
    line = cart.get(pid)
    price = _number(props.get("price"))
    if line is None:
        cart[pid] = [_quantity(props), price, _currency(props, primary)]
    else:
        line[0] += _quantity(props)
        line[1] = price or line[1]


def _ordered(profile: Profile, props: Mapping[str, Any], ts: float, primary: str) -> None:
    profile["orders"] = profile.get("orders", 0) + 1
    rev = profile.setdefault("rev", {})
    cur = _currency(props, primary)
    rev[cur] = rev.get(cur, 0.0) + order_value(props)
    _latest(profile, "last_purchase", ts)
    if ts < profile.get("first_purchase", math.inf):
        profile["first_purchase"] = ts
    cart = profile.get("cart", {})
    bought = profile.setdefault("bought", [])
    for pid, item in order_lines(props):
        qty = _quantity(item)
        profile["units"] = profile.get("units", 0) + qty
        _bump_category(profile, item.get("category"), _CATEGORY_WEIGHT["Order Completed"])
        if pid in bought:
            bought.remove(pid)
        bought.append(pid)
        line = cart.get(pid)
        if line is not None:
            line[0] -= qty
            if line[0] <= 0:
                del cart[pid]
    if len(bought) > MAX_BOUGHT:
        del bought[: len(bought) - MAX_BOUGHT]


def _add_counts(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        into[key] = into.get(key, 0) + value


def merge_profiles(user: Profile, anon: Profile) -> Profile:
    """``user`` with ``anon`` folded in: what a visitor did before logging in counts."""
    out: Profile = dict(user)
    out["first_seen"] = min(user["first_seen"], anon["first_seen"])
    out["last_seen"] = max(user["last_seen"], anon["last_seen"])
    for grid in ("h", "d"):
        merged = {k: dict(v) for k, v in user[grid].items()}
        for key, counts in anon[grid].items():
            _add_counts(merged.setdefault(key, {}), counts)
        out[grid] = merged
    for key in ("n", "rev", "cats"):
        combined = dict(user.get(key, {}))
        _add_counts(combined, anon.get(key, {}))
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
        out["cart"] = cart
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
