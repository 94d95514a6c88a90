"""Queued events -> the :class:`Changes` to the store: profiles, identity, item statistics.

One pass per event: its time (parsed once per distinct second), its subject (aliases followed),
its counts, then a small function chosen by event name in :data:`_HANDLERS` that updates the
profile and the item statistics together. Pure given what the reader returns, so a store may
run it again after a write conflict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from journeykit.collector.decisions._profile import (
    ADD_WEIGHT,
    MAX_BOUGHT,
    MAX_CART,
    MAX_CATEGORIES,
    MAX_RECENT,
    PURCHASE_WEIGHT,
    VIEW_WEIGHT,
    Profile,
    bump_category,
    count_event,
    currency,
    merge_profiles,
    new_profile,
    number,
    oldest_kept,
    order_lines,
    order_value,
    product_id,
    prune_counts,
    quantity,
)
from journeykit.collector.decisions._store import (
    Changes,
    Doc,
    ItemStats,
    Reader,
    Weights,
)
from journeykit.collector.decisions._timestamps import TimeParser
from journeykit.collector.decisions._traits import Currency
from journeykit.consent import InvalidConsentSignal, Purpose, parse_message

__all__ = ["UpdateCounts", "build_changes", "event_ids", "fold", "plain_id"]

RELATED_RECENT = 5  # a view is paired with at most this many earlier views of the session
VIEW_PAIR, BOUGHT_PAIR = 1, 3
VIEW_POPULARITY, ADD_POPULARITY, PURCHASE_POPULARITY = 1, 2, 3


_WRITE_HOPS = 64
"""Aliases a write follows (readers follow ``MAX_ALIAS_HOPS``; writes shorten what they meet)."""


@dataclass(slots=True)
class UpdateCounts:
    applied: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> events
    merged: int = 0
    kept_apart: int = 0  # merges refused: an id that belongs to one user, linked to another


def plain_id(value: Any) -> str | None:
    """A subject id as a non-empty string (numbers become strings), else ``None``."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def event_ids(event: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(user id, id to merge into it or use alone)`` of an event."""
    get = event.get
    user = get("userId")
    other = get("previousId") if get("type") == "alias" else get("anonymousId")
    # The common case first: plain non-empty strings (this runs for every queued event).
    if type(user) is not str or not user:
        user = plain_id(user)
    if other is not None and (type(other) is not str or not other):
        other = plain_id(other)
    return user, other


class _Fold:
    """What the handlers share during one fold: settings, time windows, item statistics."""

    __slots__ = (
        "category_popularity",
        "day0",
        "hour0",
        "popularity",
        "primary",
        "related",
        "session",
        "stats",
    )

    def __init__(self, primary: str, session: float, now: int, stats: ItemStats) -> None:
        self.primary = primary
        self.session = session
        self.day0, self.hour0 = oldest_kept(now)
        self.stats = stats
        self.related = stats.related
        self.popularity = stats.popularity
        self.category_popularity = stats.category_popularity

    def popular(self, pid: str, category: Any, weight: int) -> None:
        pop = self.popularity
        pop[pid] = pop.get(pid, 0) + weight
        if type(category) is str and category:
            _add(self.category_popularity, category, pid, weight)


def _add(weights: Weights, key: str, item: str, w: int) -> None:
    inner = weights.get(key)
    if inner is None:
        weights[key] = {item: w}
    else:
        inner[item] = inner.get(item, 0) + w


def _viewed(p: Profile, props: dict[str, Any], ts: int, f: _Fold) -> None:
    p["views"] = p.get("views", 0) + 1
    category = props.get("category")
    if type(category) is not str or not category:
        category = None
    else:  # bump_category inlined (half the fold's events are views)
        cats = p.get("cats")
        if cats is None:
            p["cats"] = {category: VIEW_WEIGHT}
        else:
            cats[category] = cats.get(category, 0.0) + VIEW_WEIGHT
            if len(cats) > MAX_CATEGORIES:
                del cats[min(cats, key=cats.__getitem__)]
    pid = props.get("product_id")
    if type(pid) is not str or not pid:
        pid = product_id(props)
        if pid is None:
            return
    pop = f.popularity
    pop[pid] = pop.get(pid, 0) + VIEW_POPULARITY
    if category is not None:
        inner = f.category_popularity.get(category)
        if inner is None:
            f.category_popularity[category] = {pid: VIEW_POPULARITY}
        else:
            inner[pid] = inner.get(pid, 0) + VIEW_POPULARITY
    recent: list[list[Any]] | None = p.get("recent")
    if recent is None:
        p["recent"] = [[pid, ts]]
        return
    # Co-occurrence with the views within a session of this one, before or after it (events
    # arrive out of order), before it joins them (``_add`` inlined: up to ten increments per
    # view, the fold's most frequent operation).
    related, session, taken, index = f.related, f.session, 0, -1
    mine: dict[str, int] | None = None
    for i in range(len(recent) - 1, -1, -1):
        other, seen = recent[i]
        if other == pid:
            index = i
        elif taken < RELATED_RECENT and -session <= ts - seen <= session:
            if mine is None:
                mine = related.get(pid)
                if mine is None:
                    mine = related[pid] = {}
            mine[other] = mine.get(other, 0) + VIEW_PAIR
            theirs = related.get(other)
            if theirs is None:
                related[other] = {pid: VIEW_PAIR}
            else:
                theirs[pid] = theirs.get(pid, 0) + VIEW_PAIR
            taken += 1
    if index >= 0:
        del recent[index]
    recent.append([pid, ts])
    if len(recent) > MAX_RECENT:
        del recent[0]


def _added(p: Profile, props: dict[str, Any], ts: int, f: _Fold) -> None:
    p["adds"] = p.get("adds", 0) + 1
    if ts > p.get("last_add", -1):
        p["last_add"] = ts
    category = props.get("category")
    bump_category(p, category, ADD_WEIGHT)
    pid = product_id(props)
    if pid is None:
        return
    f.popular(pid, category, ADD_POPULARITY)
    cart = p.get("cart")
    if cart is None:
        cart = p["cart"] = {}
    line = cart.get(pid)
    price = number(props.get("price"))
    if line is None:
        cart[pid] = [quantity(props), price, currency(props, f.primary)]
        if len(cart) > MAX_CART:  # the line added longest ago goes
            del cart[next(iter(cart))]
    else:
        line[0] += quantity(props)
        line[1] = price or line[1]


def _removed(p: Profile, props: dict[str, Any], ts: int, f: _Fold) -> None:
    pid = product_id(props)
    cart = p.get("cart")
    if pid is not None and cart is not None and pid in cart:
        cart[pid][0] -= quantity(props)
        if cart[pid][0] <= 0:
            del cart[pid]


def _ordered(p: Profile, props: dict[str, Any], ts: int, f: _Fold) -> None:
    p["orders"] = p.get("orders", 0) + 1
    rev = p.get("rev")
    if rev is None:
        rev = p["rev"] = {}
    cur = currency(props, f.primary)
    rev[cur] = rev.get(cur, 0.0) + order_value(props)
    if ts > p.get("last_purchase", -1):
        p["last_purchase"] = ts
    if ts < p.get("first_purchase", ts + 1):
        p["first_purchase"] = ts
    cart = p.get("cart", {})
    bought = p.get("bought")
    if bought is None:
        bought = p["bought"] = []
    lines = list(order_lines(props))
    distinct = dict(lines)  # a product on two lines of one order is bought together once
    for pid, item in distinct.items():
        f.popular(pid, item.get("category"), PURCHASE_POPULARITY)
        for other in distinct:
            if other != pid:
                _add(f.related, pid, other, BOUGHT_PAIR)
    for pid, item in lines:
        qty = quantity(item)
        p["units"] = p.get("units", 0) + qty
        bump_category(p, item.get("category"), PURCHASE_WEIGHT)
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


def _refunded(p: Profile, props: dict[str, Any], ts: int, f: _Fold) -> None:
    rev = p.get("rev")
    if rev is None:
        rev = p["rev"] = {}
    cur = currency(props, f.primary)
    rev[cur] = max(0.0, rev.get(cur, 0.0) - order_value(props))


def _reviewed(p: Profile, props: dict[str, Any], ts: int, f: _Fold) -> None:
    p["reviews"] = p.get("reviews", 0) + 1
    if ts > p.get("last_review", -1):
        p["last_review"] = ts


_HANDLERS: dict[str, Callable[[Profile, dict[str, Any], int, _Fold], None]] = {
    "Product Viewed": _viewed,
    "Product Added": _added,
    "Product Removed": _removed,
    "Order Completed": _ordered,
    "Order Refunded": _refunded,
    "Product Reviewed": _reviewed,
}
_EMPTY: dict[str, Any] = {}


class _Batch:
    def __init__(self, read: Reader) -> None:
        self.read = read
        self.docs: dict[str, Doc] = {}
        self.loaded: set[str] = set()
        self.changed: dict[str, Doc] = {}
        self.customers: dict[str, tuple[float, int, float] | None] = {}
        self.kept_apart = 0

    def load(self, ids: set[str]) -> None:
        # Every hop, not MAX_ALIAS_HOPS: an id renamed many times whose chain were cut short
        # here would get a new profile written over a stored alias, splitting the person.
        for _ in range(_WRITE_HOPS):
            wanted = ids - self.loaded
            if not wanted:
                return
            found = self.read(wanted)
            self.loaded |= wanted
            self.docs.update(found)
            ids = {d["alias"] for d in found.values() if "alias" in d}

    def resolve(self, subject: str) -> str:
        """The id ``subject``'s aliases end at; a longer chain is pointed at its end."""
        start, hops = subject, 0
        for _ in range(_WRITE_HOPS):
            doc = self.docs.get(subject)
            if doc is None or "alias" not in doc:
                break
            subject = doc["alias"]
            hops += 1
        if hops > 1:
            # Readers follow MAX_ALIAS_HOPS; each id this write met points at the end now.
            self.docs[start] = self.changed[start] = {"alias": subject}
        return subject

    def merge(self, user: str, other: str, ts: int) -> bool:
        """Fold ``other``'s profile into ``user``'s (a resolved id, not an alias) and point
        ``other`` at ``user``.

        False when they are merged already: usually ``other`` points at ``user`` itself (each
        event of a signed-in visitor carries both ids), seen without following aliases. False
        too, counted in ``kept_apart``, when ``other`` already belongs to another user: a
        shared device (a family's browser, a shop's kiosk) must not make one person of two who
        signed in on it, whether the second one's event carries the device's anonymous id or
        is the ``alias`` call a sign-up sends from it. Only an id of its own profile (a first
        visit's anonymous id, a user id that ``alias`` renames) is merged.
        """
        linked = self.docs.get(other)
        if linked is not None and "alias" in linked:
            if linked["alias"] != user and self.resolve(other) != user:
                self.kept_apart += 1
            return False
        docs, changed = self.docs, self.changed
        own = docs.get(other)  # ``other``'s own profile (not an alias: see above), if any
        target = docs.get(user)
        if target is None:
            target = docs[user] = new_profile(ts)
        if own is not None:
            target = docs[user] = merge_profiles(target, own)
            self.customers[other] = None
        changed[user] = target
        docs[other] = changed[other] = {"alias": user}
        return True


def build_changes(
    events: Sequence[Mapping[str, Any]],
    read: Reader,
    money: Currency,
    now: float,
    session: float,
    counts: UpdateCounts,
    subjects: Sequence[tuple[str | None, str | None]] | None = None,
    times: TimeParser | None = None,
) -> Changes:
    """Everything ``events`` change; ``counts`` is filled in (reset first: this may rerun)."""
    return fold(events, read, money, now, session, counts, subjects, times)[0]


def fold(
    events: Sequence[Mapping[str, Any]],
    read: Reader,
    money: Currency,
    now: float,
    session: float,
    counts: UpdateCounts,
    subjects: Sequence[tuple[str | None, str | None]] | None = None,
    times: TimeParser | None = None,
) -> tuple[Changes, dict[str, Doc]]:
    """:func:`build_changes`, and every document it read or wrote, events applied.

    The documents let a decision follow aliases through the events' own identity merges.
    ``subjects`` are the events' :func:`event_ids` when the caller has them already; ``times``
    a parser whose cache outlives this call.
    """
    counts.applied, counts.merged, counts.kept_apart = 0, 0, 0
    counts.skipped.clear()
    batch = _Batch(read)
    pairs = [event_ids(e) for e in events] if subjects is None else subjects
    ids: set[str] = set()
    for user, other in pairs:
        ids.add(user or other or "")
        if other is not None:
            ids.add(other)
    ids.discard("")
    batch.load(ids)
    today = int(now)
    f = _Fold(money.primary, session, today, ItemStats())
    parse = (times or TimeParser()).parse
    docs, changed, resolve, handlers = batch.docs, batch.changed, batch.resolve, _HANDLERS
    applied, day0, hour0 = 0, f.day0, f.hour0
    for event, (user, other) in zip(events, pairs, strict=True):
        if user is None:
            if other is None:
                counts.skipped["no_subject"] += 1
                continue
            user, other = other, None
        get = event.get
        ts = parse(get("timestamp"), today)
        doc = docs.get(user)
        if doc is not None and "alias" in doc:
            user = resolve(user)
            doc = docs.get(user)
        if other is not None and other != user and batch.merge(user, other, ts):
            counts.merged += 1
            doc = docs[user]
        kind = get("type")
        applied += 1
        if kind == "alias":
            continue
        if doc is None:
            # new_profile(ts) inlined: a call per new subject cost more than building its dict.
            doc = docs[user] = {"first_seen": ts, "last_seen": ts, "c": {}}
        else:
            if ts < doc["first_seen"]:
                doc["first_seen"] = ts
            if ts > doc["last_seen"]:
                doc["last_seen"] = ts
        changed[user] = doc
        if kind == "track":
            name = get("event")
            if type(name) is not str:
                name = "track"
            count_event(doc["c"], name, ts, day0, hour0)
            handler = handlers.get(name)
            if handler is not None:
                props = get("properties")
                handler(doc, props if type(props) is dict else _EMPTY, ts, f)
        else:
            name = kind if type(kind) is str else "unknown"
            count_event(doc["c"], name, ts, day0, hour0)
        context = get("context")
        if name == "Consent Updated" or (
            type(context) is dict and ("consent" in context or "consentManagement" in context)
        ):
            _consent(doc, event)
    counts.applied = applied
    counts.kept_apart = batch.kept_apart
    customers = batch.customers
    for subject, doc in changed.items():
        if "alias" in doc:
            continue
        prune_counts(doc["c"], day0, hour0)
        if doc.get("orders"):
            monetary = money.convert(doc.get("rev", {}))
            customers[subject] = (doc["last_purchase"], doc["orders"], monetary)
    return Changes(docs=changed, stats=f.stats, customers=customers), docs


def _consent(profile: Profile, event: Mapping[str, Any]) -> None:
    if type(event) is not dict:
        return
    try:
        update = parse_message(event)
    except InvalidConsentSignal:
        return  # the collector's privacy step rejects such events before they get here
    if update is not None and Purpose.PERSONALIZATION in update.purposes:
        profile["consent"] = update.purposes[Purpose.PERSONALIZATION]
