"""Per-subject consent held by a client: recorded locally, or asked of the application.

The client keeps the consent it was told about (:meth:`Client.consent`) in a bounded map keyed
by user id and anonymous id, least recently used first out. An application that stores consent
itself (a web integration reading the banner cookie, a database) passes a resolver instead or
as well; when both know the subject, the state with the later signal wins.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

from journeykit.consent import (
    Action,
    ConsentState,
    ConsentUpdate,
    Decision,
    GatePolicy,
    Purpose,
    decide,
    is_consent_event,
)

__all__ = ["USER", "ConsentBook", "ConsentResolver", "Entry"]

log = logging.getLogger("journeykit")

ConsentResolver = Callable[[str | None, str | None], ConsentState | None]
"""``(user_id, anonymous_id) -> ConsentState | None``, called for every message."""

Entry = tuple[ConsentState, frozenset[Purpose]]
"""A subject's consent state and :meth:`ConsentState.granted` of it."""

USER: Final = "u"
"""The first item of a user id's key in :attr:`ConsentBook.states` (``(USER, user_id)``)."""
_ANON: Final = "a"


class ConsentBook:
    """Consent per subject, and the gate's decision for each message.

    Args:
        policy: the gate policy; its regime also applies to subjects first recorded here.
        max_subjects: most user and anonymous ids kept; past it the least recently used id is
            forgotten (its messages are then decided as if nothing were known, unless the
            resolver knows).
        resolver: the application's own consent lookup, if any.
    """

    def __init__(
        self, policy: GatePolicy, max_subjects: int, resolver: ConsentResolver | None = None
    ) -> None:
        self._policy = policy
        self._max = max_subjects
        self._resolver = resolver
        # Each state with its granted purposes, worked out once when recorded. Read directly by
        # the fused track path (Privacy.apply_track), the way local() does.
        self.states: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.states)

    def after_fork(self) -> None:
        """In a forked child: a fresh lock, in case another thread of the parent held it."""
        self._lock = threading.Lock()

    def record(self, update: ConsentUpdate) -> ConsentState:
        """Fold ``update`` into the state of its user id and of its anonymous id.

        Each id's own state takes the update, as in the collector: a device keeps the choices
        it made itself for purposes the update does not name, rather than taking the user's.
        Returns the state of the first id (the user's, if named).
        """
        keys = _keys(update.user_id, update.anonymous_id)
        states: list[ConsentState] = []
        with self._lock:
            for key in keys:
                current = self.states.get(key)
                if current is None:
                    state = ConsentState.from_update(update, self._policy.regime)
                else:
                    state = current[0].merge(update)
                self.states[key] = (state, state.granted())
                self.states.move_to_end(key)
                states.append(state)
            while len(self.states) > self._max:
                self.states.popitem(last=False)
        return states[0]

    def local(self, user_id: str | None, anonymous_id: str | None) -> ConsentState | None:
        """The state recorded here, by user id first, then anonymous id.

        Reads take no lock: every call reads this map, changes are rare, and each of the
        OrderedDict's operations used here is a single C call under the GIL. A state is
        immutable, so a reader sees the old state or the new one, never a mix. The least
        recently used order is only a hint for what to forget first, so a reader racing a
        writer may at worst refresh an id the writer has just forgotten (ignored).
        """
        states = self.states
        if user_id is not None:
            entry = states.get((USER, user_id))
            if entry is not None:
                _touch(states, (USER, user_id))
                return entry[0]
        if anonymous_id is not None:
            entry = states.get((_ANON, anonymous_id))
            if entry is not None:
                _touch(states, (_ANON, anonymous_id))
                return entry[0]
        return None

    def state(self, user_id: str | None, anonymous_id: str | None) -> ConsentState | None:
        """The subject's consent: the local state or the resolver's, whichever is newer.

        Raises:
            Exception: whatever the resolver raised.
        """
        local = self.local(user_id, anonymous_id)
        if self._resolver is None:
            return local
        resolved = self._resolver(user_id, anonymous_id)
        if resolved is None:
            return local
        if local is None or _newer(resolved, local):
            return resolved
        return local

    def decide(self, message: Mapping[str, Any]) -> Decision:
        """The gate's decision; a resolver that raises drops the message (``consent_error``)."""
        if self._resolver is None:
            state = self.local(message.get("userId"), message.get("anonymousId"))
            return decide(state, message, self._policy)
        if is_consent_event(message):
            return decide(None, message, self._policy)  # allowed whatever the state: no lookup
        try:
            state = self.state(message.get("userId"), message.get("anonymousId"))
        except Exception:  # an application bug must neither break tracking nor bypass consent
            if not self._policy.required(message):
                # Necessary: allowed whatever the consent, as if nothing were known (so
                # without what marketing needs).
                log.exception("journeykit: consent_resolver raised; sent as if none known")
                return decide(None, message, self._policy)
            log.exception("journeykit: consent_resolver raised; the event is dropped")
            return Decision(Action.DROP, "consent_error", None)
        return decide(state, message, self._policy)


def _touch(states: OrderedDict[tuple[str, str], Entry], key: tuple[str, str]) -> None:
    try:  # noqa: SIM105 - contextlib.suppress costs a context manager per call
        states.move_to_end(key)
    except KeyError:  # forgotten by record() since it was read
        pass


def _keys(user_id: str | None, anonymous_id: str | None) -> list[tuple[str, str]]:
    keys = []
    if user_id is not None:
        keys.append((USER, user_id))
    if anonymous_id is not None:
        keys.append((_ANON, anonymous_id))
    return keys


def _newer(a: ConsentState, b: ConsentState) -> bool:
    if a.timestamp is None:
        return False
    return b.timestamp is None or a.timestamp > b.timestamp
