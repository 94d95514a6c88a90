"""The write-behind queue: events accepted by ``update`` and not yet written to the store.

Events are kept as they came, in order, and folded into profiles by the same pure function
(:func:`~journeykit.collector.decisions._update.build_changes`) at flush time and, for the
subjects asked, at decision time, so a queued event and a stored one give the same answer
(a cart emptied then refilled, an identity merge in the middle: order matters, and no second
"delta" representation has to agree with the first).

Ids linked by an event (``userId`` with ``anonymousId``, an alias's ``previousId``) are joined
in a union-find, so the events that matter for one subject, across a login inside the queue,
are found without scanning the whole queue.

Item statistics (co-occurrence, popularity) are commutative sums; :class:`PendingStats`
aggregates them across flushes and writes them every ``stats_flush_seconds``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from journeykit.collector.decisions._store import Changes

__all__ = ["PendingEvents", "PendingStats"]

Event = Mapping[str, Any]


class PendingEvents:
    """Queued events in arrival order, indexed by linked subject ids (not thread-safe)."""

    __slots__ = ("_ids", "_members", "_parent", "events")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._ids: list[tuple[str | None, str | None]] = []
        self._parent: dict[str, str] = {}
        self._members: dict[str, list[int]] = {}  # root id -> indexes of its events

    def __len__(self) -> int:
        return len(self.events)

    def subjects(self, n: int) -> list[tuple[str | None, str | None]]:
        """The ids of the ``n`` oldest events (as :func:`event_ids` gives them)."""
        return self._ids[:n]

    def _find(self, subject: str) -> str:
        parent = self._parent
        root = parent.setdefault(subject, subject)
        while parent[root] != root:
            parent[root] = parent[parent[root]]  # path halving
            root = parent[root]
        return root

    def add(self, event: Event, user: str | None, other: str | None) -> bool:
        """Queue ``event`` of ``user``/``other``; True when it links two ids not linked yet."""
        index = len(self.events)
        self.events.append(event)
        self._ids.append((user, other))
        linked = False
        root = self._find(user or other or "")
        if user is not None and other is not None:
            second = self._find(other)
            if second != root:
                linked = True
                big, small = self._members.get(root, []), self._members.pop(second, [])
                if len(big) < len(small):
                    big, small = small, big
                big.extend(small)
                self._parent[second] = root
                self._members[root] = big
        self._members.setdefault(root, []).append(index)
        return linked

    def events_for(self, subjects: Iterable[str]) -> list[Event]:
        """The queued events of ``subjects`` and of every id linked to them, in order."""
        roots = {self._find(s) for s in subjects if s in self._parent}
        if not roots:
            return []
        indexes = sorted(i for r in roots for i in self._members.get(r, ()))
        return [self.events[i] for i in dict.fromkeys(indexes)]

    def drop_first(self, n: int) -> None:
        """Forget the ``n`` oldest events (they were written); re-index the rest."""
        rest = list(zip(self.events[n:], self._ids[n:], strict=True))
        self.events.clear()
        self._ids.clear()
        self._parent.clear()
        self._members.clear()
        for event, (user, other) in rest:
            self.add(event, user, other)

    def forget(self, subjects: Collection[str]) -> int:
        """Drop queued events that name any of ``subjects``; returns how many."""
        wanted = set(subjects)
        kept = [
            (e, ids)
            for e, ids in zip(self.events, self._ids, strict=True)
            if ids[0] not in wanted and ids[1] not in wanted
        ]
        dropped = len(self.events) - len(kept)
        if dropped:
            self.events = [e for e, _ in kept]
            self._ids = [ids for _, ids in kept]
            self.drop_first(0)
        return dropped


class PendingStats:
    """Co-occurrence and popularity increments not written yet (sums: order does not matter)."""

    __slots__ = ("category_popularity", "pairs", "popularity", "since")

    def __init__(self) -> None:
        self.pairs: Counter[tuple[str, str]] = Counter()
        self.popularity: Counter[str] = Counter()
        self.category_popularity: Counter[tuple[str, str]] = Counter()
        self.since: float | None = None  # monotonic time of the oldest unwritten increment

    def __len__(self) -> int:
        return len(self.pairs) + len(self.popularity) + len(self.category_popularity)

    def add(self, changes: Changes, now: float) -> None:
        if not (changes.pairs or changes.popularity or changes.category_popularity):
            return
        self.pairs.update(changes.pairs)
        self.popularity.update(changes.popularity)
        self.category_popularity.update(changes.category_popularity)
        if self.since is None:
            self.since = now

    def into(self, changes: Changes) -> Changes:
        """A copy of ``changes`` carrying these increments too (``changes`` is left alone)."""
        out = Changes(docs=changes.docs, customers=changes.customers)
        out.pairs.update(self.pairs)
        out.pairs.update(changes.pairs)
        out.popularity.update(self.popularity)
        out.popularity.update(changes.popularity)
        out.category_popularity.update(self.category_popularity)
        out.category_popularity.update(changes.category_popularity)
        return out

    def clear(self) -> None:
        self.pairs.clear()
        self.popularity.clear()
        self.category_popularity.clear()
        self.since = None
