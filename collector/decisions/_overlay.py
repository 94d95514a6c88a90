"""Folded overlays: a subject's queued events folded once, then only the new ones on top.

A decision reads the stored documents with the subject's queued events folded in. Re-folding
the whole queue for every decision made its cost grow with the events a subject queued in a
flush interval; an overlay keeps the result of the last fold (the documents it read and wrote)
and folds only the events queued since. Reused only when that gives the very answer a re-fold
would, else the queue is folded again from the store:

- the queue is the same (``epoch``: a flush or an erasure re-indexes it) and the events folded
  before are a prefix of the events wanted now (an identity merge inside the queue brings older
  events in: not a prefix);
- every document the fold read is unchanged in the store (another process may have written);
- the clock has not gone back, and no folded event's time depended on it (a missing or future
  timestamp counts as "now"), unless it is the same second: pruning the day and hour windows at
  a later time drops what a fold at that time would not have counted, and nothing else.

The fold itself is :func:`~journeykit.collector.decisions._update.fold`, the function a flush
uses, so there is no second representation of an event's effect to keep in agreement.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import orjson

from journeykit.collector.decisions._profile import prune
from journeykit.collector.decisions._store import Doc
from journeykit.collector.decisions._timestamps import TimeParser
from journeykit.collector.decisions._traits import Currency
from journeykit.collector.decisions._update import UpdateCounts, fold

__all__ = ["Overlays"]

MAX_OVERLAYS = 1024  # per queue epoch; past it they are all dropped (rebuilt on demand)
_LATEST = 1 << 62  # parse "now": a timestamp past the fold's second depended on the clock


class _Overlay:
    __slots__ = ("base", "changed", "indexes", "pinned", "state", "today")

    def __init__(
        self,
        indexes: list[int],
        base: dict[str, bytes | None],
        state: bytes,
        changed: frozenset[str],
        today: int,
        pinned: bool,
    ) -> None:
        self.indexes = indexes  # queue positions folded, in order
        self.base = base  # id -> the stored document as read (None: absent)
        self.state = state  # every document read or written, events applied (JSON)
        self.changed = changed  # ids the events changed (pruned again at each later fold)
        self.today = today
        self.pinned = pinned  # valid only at ``today``: an event's time was "now"


class Overlays:
    """The overlays of one queue, keyed by the first queue position they fold (thread-safe)."""

    def __init__(self, money: Currency, session: float) -> None:
        self.money = money
        self.session = session
        self._lock = threading.Lock()
        self._epoch = -1
        self._by_first: dict[int, _Overlay] = {}
        self._times = TimeParser()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        with self._lock:
            self._by_first.clear()

    def _get(self, epoch: int, indexes: list[int], today: int) -> _Overlay | None:
        with self._lock:
            if epoch != self._epoch:
                return None
            found = self._by_first.get(indexes[0])
        if found is None or len(found.indexes) > len(indexes) or today < found.today:
            return None
        if found.pinned and today != found.today:
            return None
        if indexes[: len(found.indexes)] != found.indexes:
            return None
        return found

    def _put(self, epoch: int, overlay: _Overlay) -> None:
        with self._lock:
            if epoch != self._epoch:
                if epoch < self._epoch:
                    return  # computed before a flush that has re-indexed the queue since
                self._epoch = epoch
                self._by_first.clear()
            if len(self._by_first) >= MAX_OVERLAYS:
                self._by_first.clear()
            self._by_first[overlay.indexes[0]] = overlay

    def fold(
        self,
        epoch: int,
        indexes: list[int],
        events: Sequence[Mapping[str, Any]],
        docs: dict[str, Doc],
        fetch: Callable[[Collection[str]], dict[str, Doc]],
        now: float,
    ) -> dict[str, Doc]:
        """``docs`` (stored, as fetched) with ``events`` (queue positions ``indexes``) folded in.

        ``fetch`` reads stored documents not in ``docs``. The result is what
        ``fold(events, ...)`` on the stored documents gives, whether or not an overlay is used.
        """
        today = int(now)

        def stored(ids: Collection[str]) -> dict[str, Doc]:
            out = {i: docs[i] for i in ids if i in docs}
            missing = [i for i in ids if i not in docs]
            if missing:
                out.update(fetch(missing))
            return out

        old = self._get(epoch, indexes, today)
        if old is not None:
            current = stored(list(old.base))
            if any(_dump(current.get(i)) != b for i, b in old.base.items()):
                old = None
        if old is None:
            self.misses += 1
            base: dict[str, bytes | None] = {}
            state: dict[str, Doc] = {}
            changed: set[str] = set()
            start, pinned = 0, False
        else:
            self.hits += 1
            base = dict(old.base)
            state = orjson.loads(old.state)
            changed = set(old.changed)
            start, pinned = len(old.indexes), old.pinned

        def read(ids: Collection[str]) -> dict[str, Doc]:
            out = {i: state[i] for i in ids if i in state}
            rest = [i for i in ids if i not in state and i not in base]
            if rest:
                found = stored(rest)
                for i in rest:
                    base[i] = _dump(found.get(i))  # before the fold changes it
                out.update(found)
            return out

        tail = events[start:]
        changes, folded = fold(tail, read, self.money, now, self.session, UpdateCounts())
        state.update(folded)
        changed.update(changes.docs)
        for subject in changed:
            doc = state.get(subject)
            if doc is not None and "alias" not in doc:
                prune(doc, today)  # the earlier folds pruned at their own, earlier, time
        parse = self._times.parse
        pinned = pinned or any(parse(e.get("timestamp"), _LATEST) > today for e in tail)
        self._put(
            epoch,
            _Overlay(list(indexes), base, orjson.dumps(state), frozenset(changed), today, pinned),
        )
        docs.update(state)
        return docs


def _dump(doc: Doc | None) -> bytes | None:
    return None if doc is None else orjson.dumps(doc)
