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

from journeykit.collector.decisions._store import Changes, ItemStats
from journeykit.collector.decisions._update import plain_id

__all__ = ["PendingEvents", "PendingStats"]

Event = Mapping[str, Any]


class PendingEvents:
    """Queued events in arrival order, indexed by linked subject ids (not thread-safe)."""

    __slots__ = ("_ids", "_members", "_parent", "epoch", "events")

    def __init__(self) -> None:
        self.epoch = 0  # changes whenever queue positions do (a flush, an erasure)
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

    def extend(self, events: Iterable[Event], room: int, skipped: Counter[str]) -> tuple[int, int]:
        """Queue ``events`` while there is ``room``; ``(queued, links)``, ``skipped`` filled in.

        :meth:`add` inlined for the common case (one id, or two ids linked already): this runs
        for every event on the request path.
        """
        queued = linked = 0
        evs, ids, parent, members, find = (
            self.events,
            self._ids,
            self._parent,
            self._members,
            self._find,
        )
        for event in events:
            get = event.get
            user = get("userId")
            other = get("previousId") if get("type") == "alias" else get("anonymousId")
            if type(user) is not str or not user:
                user = plain_id(user)
            if other is not None and (type(other) is not str or not other):
                other = plain_id(other)
            key = user or other
            if key is None:
                skipped["no_subject"] += 1
                continue
            if room <= queued:
                skipped["store_unavailable"] += 1  # the store has been down for long
                continue
            queued += 1
            if user is not None and other is not None and other != user:
                # Usually linked already (each event of a signed-in visitor carries both ids):
                # both are then children of one root, and the union-find has nothing to do.
                root = parent.get(user)
                found = None
                if root is not None and parent.get(other) == root and parent[root] == root:
                    found = members.get(root)
                if found is None:
                    linked += self.add(event, user, other)
                    continue
                found.append(len(evs))
                evs.append(event)
                ids.append((user, other))
                continue
            root = parent.get(key)
            if root is None:
                parent[key] = key
                members[key] = [len(evs)]
            else:
                if root != key or parent[root] != root:
                    root = find(key)
                found = members.get(root)
                if found is None:
                    members[root] = [len(evs)]
                else:
                    found.append(len(evs))
            evs.append(event)
            ids.append((user, other))
        return queued, linked

    def events_for(self, subjects: Iterable[str]) -> list[Event]:
        """The queued events of ``subjects`` and of every id linked to them, in order."""
        events = self.events
        return [events[i] for i in self.indexes_for(subjects)]

    def indexes_for(self, subjects: Iterable[str]) -> list[int]:
        """The queue positions of :meth:`events_for`, ascending."""
        parent = self._parent
        roots = {self._find(s) for s in subjects if s in parent}
        if not roots:
            return []
        members = self._members
        if len(roots) == 1:  # a root's positions are distinct, in order but after a union
            return sorted(members.get(roots.pop(), ()))
        return sorted(i for r in roots for i in members.get(r, ()))

    def linked_ids(self, indexes: Iterable[int]) -> dict[str, None]:
        """The subject ids of the events at ``indexes`` (as :func:`event_ids` gives them)."""
        ids = self._ids
        out: dict[str, None] = {}
        for i in indexes:
            user, other = ids[i]
            if user is not None:
                out[user] = None
            if other is not None:
                out[other] = None
        return out

    def drop_first(self, n: int) -> None:
        """Forget the ``n`` oldest events (they were written); re-index the rest."""
        rest = list(zip(self.events[n:], self._ids[n:], strict=True))
        self.epoch += 1
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
    """Item-statistic increments not written yet (sums: order does not matter)."""

    __slots__ = ("since", "stats")

    def __init__(self) -> None:
        self.stats = ItemStats()
        self.since: float | None = None  # monotonic time of the oldest unwritten increment

    def __len__(self) -> int:
        return len(self.stats)

    def add(self, changes: Changes, now: float) -> None:
        if not len(changes.stats):
            return
        self.stats.absorb(changes.stats)  # a flush's own: nothing else holds them
        if self.since is None:
            self.since = now

    def into(self, changes: Changes) -> Changes:
        """A copy of ``changes`` carrying these increments too (``changes`` is left alone)."""
        combined = ItemStats()
        combined.add(self.stats)
        combined.add(changes.stats)
        return Changes(docs=changes.docs, stats=combined, customers=changes.customers)

    def clear(self) -> None:
        self.stats.clear()
        self.since = None
