"""One request's events -> the :class:`Changes` to the store: profiles, identity, item stats.

Pure given what the reader returns, so a store may run it again after a write conflict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from journeykit.collector.decisions._profile import (
    Profile,
    apply_event,
    event_time,
    merge_profiles,
    new_profile,
    order_lines,
    product_id,
    prune,
)
from journeykit.collector.decisions._store import Changes, Doc, Reader
from journeykit.collector.decisions._traits import Currency
from journeykit.consent import InvalidConsentSignal, Purpose, parse_message

__all__ = ["UpdateCounts", "build_changes", "event_ids", "fold"]

MAX_ALIAS_HOPS = 4
RELATED_RECENT = 5  # a view is paired with at most this many earlier views of the session
VIEW_PAIR, BOUGHT_PAIR = 1, 3
_POPULARITY = {"Product Viewed": 1, "Product Added": 2}
PURCHASE_POPULARITY = 3


@dataclass(slots=True)
class UpdateCounts:
    applied: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> events
    merged: int = 0


def _id(value: Any) -> str | None:
    if type(value) is str:  # the common case first: this runs for every event
        return value or None
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def event_ids(event: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(user id, id to merge into it or use alone)`` of an event."""
    get = event.get
    other = get("previousId") if get("type") == "alias" else get("anonymousId")
    return _id(get("userId")), _id(other)


class _Batch:
    def __init__(self, read: Reader, money: Currency, now: float, session: float) -> None:
        self.read = read
        self.money = money
        self.now = now
        self.session = session
        self.docs: dict[str, Doc] = {}
        self.loaded: set[str] = set()
        self.changes = Changes()

    def load(self, ids: set[str]) -> None:
        for _ in range(MAX_ALIAS_HOPS):
            wanted = ids - self.loaded
            if not wanted:
                return
            found = self.read(wanted)
            self.loaded |= wanted
            self.docs.update(found)
            ids = {d["alias"] for d in found.values() if "alias" in d}

    def resolve(self, subject: str) -> str:
        for _ in range(MAX_ALIAS_HOPS):
            doc = self.docs.get(subject)
            if doc is None or "alias" not in doc:
                return subject
            subject = doc["alias"]
        return subject

    def profile(self, subject: str, ts: float) -> Profile:
        doc = self.docs.get(subject)
        if doc is None:
            doc = new_profile(ts)
            self.docs[subject] = doc
        self.changes.docs[subject] = doc
        return doc

    def merge(self, user: str, other: str, ts: float) -> bool:
        """Fold ``other``'s profile into ``user``'s and point ``other`` at ``user``."""
        source = self.resolve(other)
        if source == user:
            return False
        anon = self.docs.get(source)
        target = self.profile(user, ts)
        if anon is not None and "alias" not in anon:
            self.docs[user] = merge_profiles(target, anon)
            self.changes.docs[user] = self.docs[user]
            self.changes.customers[source] = None
        self.docs[source] = {"alias": user}
        self.changes.docs[source] = self.docs[source]
        if other != source:
            self.docs[other] = {"alias": user}
            self.changes.docs[other] = self.docs[other]
        return True


def build_changes(
    events: Sequence[Mapping[str, Any]],
    read: Reader,
    money: Currency,
    now: float,
    session: float,
    counts: UpdateCounts,
    subjects: Sequence[tuple[str | None, str | None]] | None = None,
) -> Changes:
    """Everything ``events`` change; ``counts`` is filled in (reset first: this may rerun)."""
    return fold(events, read, money, now, session, counts, subjects)[0]


def fold(
    events: Sequence[Mapping[str, Any]],
    read: Reader,
    money: Currency,
    now: float,
    session: float,
    counts: UpdateCounts,
    subjects: Sequence[tuple[str | None, str | None]] | None = None,
) -> tuple[Changes, dict[str, Doc]]:
    """:func:`build_changes`, and every document it read or wrote, events applied.

    The documents let a decision follow aliases through the events' own identity merges.
    ``subjects`` are the events' :func:`event_ids` when the caller has them already.
    """
    counts.applied, counts.merged = 0, 0
    counts.skipped.clear()
    batch = _Batch(read, money, now, session)
    ids: set[str] = set()
    pairs = [event_ids(e) for e in events] if subjects is None else subjects
    for user, other in pairs:
        ids.update(i for i in (user, other) if i is not None)
    batch.load(ids)
    for event, (user, other) in zip(events, pairs, strict=True):
        if user is None and other is None:
            counts.skipped["no_subject"] += 1
            continue
        ts = event_time(event, now)
        if user is not None:
            subject = batch.resolve(user)
            if other is not None and batch.merge(subject, other, ts):
                counts.merged += 1
        else:
            subject = batch.resolve(other or "")
        if event.get("type") == "alias":
            counts.applied += 1
            continue
        profile = batch.profile(subject, ts)
        _item_stats(batch, profile, event, ts)
        apply_event(profile, event, ts, now, money.primary)
        _consent(profile, event)
        counts.applied += 1
    changes = batch.changes
    for subject, doc in changes.docs.items():
        if "alias" in doc:
            continue
        prune(doc, now)
        if doc.get("orders"):
            monetary = money.convert(doc.get("rev", {}))
            changes.customers[subject] = (doc["last_purchase"], doc["orders"], monetary)
    return changes, batch.docs


def _item_stats(batch: _Batch, profile: Profile, event: Mapping[str, Any], ts: float) -> None:
    """Co-occurrence and popularity, computed before the event changes ``recent``."""
    if event.get("type") != "track":
        return
    name = event.get("event")
    props = event.get("properties")
    if not isinstance(props, dict):
        return
    changes = batch.changes
    if name in _POPULARITY:
        pid = product_id(props)
        if pid is None:
            return
        weight = _POPULARITY[name]
        changes.popularity[pid] += weight
        category = props.get("category")
        if isinstance(category, str) and category:
            changes.category_popularity[(category, pid)] += weight
        if name == "Product Viewed":
            pairs = changes.pairs
            taken = 0
            for other, seen in reversed(profile.get("recent", ())):
                if other != pid and ts - seen <= batch.session:
                    pairs[(pid, other)] += VIEW_PAIR
                    pairs[(other, pid)] += VIEW_PAIR
                    taken += 1
                    if taken == RELATED_RECENT:
                        break
    elif name == "Order Completed":
        lines = list(dict(order_lines(props)).items())
        for pid, item in lines:
            changes.popularity[pid] += PURCHASE_POPULARITY
            category = item.get("category")
            if isinstance(category, str) and category:
                changes.category_popularity[(category, pid)] += PURCHASE_POPULARITY
            for other, _ in lines:
                if other != pid:
                    changes.pairs[(pid, other)] += BOUGHT_PAIR


def _consent(profile: Profile, event: Mapping[str, Any]) -> None:
    if type(event) is not dict:
        return
    try:
        update = parse_message(event)
    except InvalidConsentSignal:
        return  # the collector's privacy step rejects such events before they get here
    if update is not None and Purpose.PERSONALIZATION in update.purposes:
        profile["consent"] = update.purposes[Purpose.PERSONALIZATION]
