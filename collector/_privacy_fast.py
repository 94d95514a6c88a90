"""The privacy step's fused path for the usual event: no consent signal of its own.

Most events of a batch carry no consent signal, and most of their subjects share a consent
state (``None``, under opt-out, for every subject that never chose). For those, what
``PrivacyStep.process_reference`` does per event (ids, the suppression check, signal parsing,
the store, the gate, pseudonymization) is done here in one loop over the batch, with:

- subject pseudonyms from a memo read inline (:class:`~journeykit.consent._compiled.IdPseudonyms`),
  and not looked up again for an event with the same ids as the one before it (a browser's
  batch), unless a signal or a merge came in between;
- "no signal" told apart with the same few lookups ``parse_message`` starts with;
- the gate's required purposes read from the policy's compiled tables; a per-state granted set
  (the state's own, or, for upstream-checked sources, that of its opt-out copy, made once per
  state), and its verdict reused for the next event of the same state and purposes; the
  general :func:`~journeykit.consent.decide` only for strip plans that overlap or go through
  lists;
- stripping and pseudonymization in one walk of code generated for the rules' tree
  (:meth:`~journeykit.consent._compiled.Protector.stripping`), with a memo per field.

A request with ``Sec-GPC: 1`` gives every event the same signal. Merging it into a subject's
state changes nothing when the state absorbs it (:meth:`~journeykit.consent.ConsentState.absorbs`),
and a state it was merged into does (merging is idempotent): so it is merged at most once per
subject and request, through the reference path's own merge (``Header``, which also records a
change in force in the ledger), and skipped when every subject's state absorbs it. The states
known to absorb the request's update are remembered by object for the request. Any event with
a signal of its own takes the reference path; ``tests/collector/test_privacy_fast.py`` checks
that both paths give the same outcome, consent store included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from journeykit.collector.suppression import SuppressionList
from journeykit.consent import (
    CONSENT_EVENT,
    ConsentState,
    ConsentUpdate,
    GatePolicy,
    Purpose,
    Regime,
    Removal,
    decide,
)
from journeykit.consent import gate as _gate
from journeykit.consent._compiled import IdPseudonyms, Protector

__all__ = ["FusedStep", "Header"]

_OPT_OUT: Final = Regime.OPT_OUT
_DROP: Final = _gate.Action.DROP
_CACHE_SIZE: Final = 8_192

_NOT: Any = object()  # absorbed.get's default: a None state is not absorbed, it has to merge
_NOBODY: Any = (object(), object(), None)  # ids no event has: see FusedStep.run's ``last``
_GENERAL: Any = object()  # strip through decide(): paths that overlap or go through lists
_strip_tree = _gate._strip_tree

_Gate = tuple[ConsentState, frozenset[Purpose], Any, ConsentState, Any]
"""A state; the purposes granted under it; its strip tree, ``_GENERAL`` or ``None`` (nothing
to strip); the state the gate reads (the state, or its opt-out copy for upstream sources);
the walker that strips that tree and pseudonymizes in one walk, if there is one."""

Slow = Callable[[int, dict[str, Any]], None]
"""The reference path for one event, recording into the same outcome."""

Header = Callable[[list[str], dict[str, Any]], None]
"""Merge the request's header signal into these subjects (at least one) for this event, and
record the change in force, if any, as the reference path does."""


def _no_merge(subjects: list[str], event: dict[str, Any]) -> None:
    raise AssertionError("no header signal in this request")  # never called without one


class FusedStep:
    """The fused loop of one privacy step; holds its memos, shares its store and list."""

    __slots__ = ("_gates", "_ids", "_protector", "_states", "_suppression")

    def __init__(
        self,
        *,
        ids: IdPseudonyms,
        protector: Protector,
        states: dict[str, ConsentState],
        suppression: SuppressionList | None,
    ) -> None:
        self._ids = ids
        self._protector = protector
        self._states = states  # the store's own dict: read without its lock, as state() does
        self._suppression = suppression
        # Per policy, per consent state: what the gate needs of it (keyed by id, the objects
        # kept in the entries so that an id cannot be reused while its entry lives).
        self._gates: dict[int, tuple[GatePolicy, dict[int, _Gate]]] = {}

    def run(
        self,
        events: list[tuple[int, dict[str, Any]]],
        kept: list[dict[str, Any]],
        dropped: dict[str, int],
        fields_removed: dict[str, int],
        policy: GatePolicy,
        upstream: bool,
        slow: Slow,
        header: tuple[ConsentUpdate, Header] | None = None,
    ) -> int:
        """Process ``events`` into ``kept`` and the counters; returns how many were suppressed.

        ``dropped`` and ``fields_removed`` are the outcome's counters (a missing key reads 0).
        ``header``: the request's header signal (``Sec-GPC``) and the function that merges it
        into the subjects of an event that has no signal of its own.
        """
        memo, new_id = self._ids.memo, self._ids
        states = self._states
        suppression = self._suppression
        # The list as it is at the start of the batch (it changes by whole copies): empty, the
        # usual case, it has nothing to check per event.
        suppressing = suppression is not None and len(suppression) > 0
        lookup = suppressing or header is not None  # every event's subjects are needed
        compiled = policy._compiled
        by_event, by_type, default = compiled.by_event, compiled.by_type, compiled.default
        opt_out = policy.regime is _OPT_OUT
        gates = self._gates_of(policy)
        walker = self._protector.walker
        protect = self._protector.protect
        suppressed = 0
        update: ConsentUpdate | None = None
        merge: Header = _no_merge
        if header is not None:
            update, merge = header
        # States known to absorb the header's update, by id (the objects kept with their id,
        # so that no other object can take it). A state just merged is not put here: the
        # subject's next event checks it, which also holds if another thread (following the
        # ledger) replaced it in between.
        absorbed: dict[int, ConsentState] = {}
        known = absorbed.get

        def absorbs(state: ConsentState | None) -> bool:
            """Whether ``state`` absorbs the header's update (merging it changes nothing)."""
            if state is None or update is None or not state.absorbs(update):
                return False
            absorbed[id(state)] = state
            return True

        # The last event's userId, anonymousId and the state the gate read for it: the next
        # event of the same ids reads the same, unless a signal or a merge came in between.
        last: tuple[Any, Any, ConsentState | None] = _NOBODY
        # The last state and required purposes the gate let an event through with by the
        # walk alone (nothing to strip, or stripped by the walk), and that walk.
        seen: tuple[Any, Any, Any] = _NOBODY
        lost: list[Removal] = []  # one list for the batch: emptied after each event's removals
        for index, event in events:
            name = event.get("event")
            context = event.get("context")
            if name == CONSENT_EVENT or (
                type(context) is dict and ("consent" in context or "consentManagement" in context)
            ):
                slow(index, event)  # a consent signal: recorded by the reference path
                last = _NOBODY  # it may have changed any state
                continue
            state = None
            # The subjects' pseudonyms are needed to look them up: not at all while nobody
            # chose (under opt-out, the usual case), nobody is suppressed and no header spoke.
            if lookup or states:
                user = event.get("userId")
                device = event.get("anonymousId")
                if user == last[0] and device == last[1]:
                    state = last[2]  # the previous event's subject (a browser's batch)
                elif lookup:  # PrivacyStep._ids and the pseudonyms of the ids, inlined
                    mine = theirs = None  # the user's pseudonym, the device's
                    if isinstance(user, str) and user:
                        mine = memo.get(user) or new_id(user)
                    if isinstance(device, str) and device:
                        theirs = memo.get(device) or new_id(device)
                    if suppressing and self._suppressed(user, device, mine, theirs):
                        suppressed += 1
                        continue
                    # ConsentStore.state: the user's, else the device's.
                    state = None if mine is None else states.get(mine)
                    other = None if theirs is None else states.get(theirs)
                    if update is None or (
                        (mine is None or known(id(state), _NOT) is state or absorbs(state))
                        and (theirs is None or known(id(other), _NOT) is other or absorbs(other))
                    ):
                        if state is None:
                            state = other
                        last = (user, device, state)
                    else:  # a subject's state does not absorb the header's update: merged
                        state = self._merge(mine, theirs, event, merge)
                        last = _NOBODY  # its next event checks the merged states
                else:  # ConsentStore.state, inlined
                    if isinstance(user, str) and user:
                        state = states.get(memo.get(user) or new_id(user))
                    if state is None and isinstance(device, str) and device:
                        state = states.get(memo.get(device) or new_id(device))
                    last = (user, device, state)
            # decide(state, event, policy), inlined up to the strip plan. No state under
            # opt-out (nobody chose: the usual case) allows every event, whatever it needs.
            message: Any = event
            walk = walker
            if state is not None or not opt_out:
                kind = event.get("type")
                named = type(name) is str and kind == "track"  # as decide(): a track's name
                required = by_event.get(name) if named and type(name) is str else None
                if required is None:
                    required = by_type.get(kind, default) if type(kind) is str else default
                if not required:
                    # Necessary only: allowed, without what marketing needs, as decide() does
                    # (rare: through the general function).
                    effective = state
                    if state is not None:
                        gate = gates.get(id(state))
                        if gate is None or gate[0] is not state:
                            gate = self._gate(state, policy, upstream, gates)
                        effective = gate[3]
                    message = decide(effective, event, policy).message
                elif state is None:
                    dropped["no_consent"] = dropped.get("no_consent", 0) + 1
                    continue
                elif state is seen[0] and required is seen[1]:
                    walk = seen[2]  # what the gate let the previous event through with
                else:
                    gate = gates.get(id(state))
                    if gate is None or gate[0] is not state:
                        gate = self._gate(state, policy, upstream, gates)
                    granted = gate[1]
                    denied = None
                    for purpose in required:
                        if purpose not in granted:
                            denied = _gate._DENIED[purpose]
                            break
                    if denied is not None:
                        dropped[denied] = dropped.get(denied, 0) + 1
                        continue
                    strip = gate[2]
                    if strip is None:
                        seen = (state, required, walk)
                    elif strip is _GENERAL:
                        decision = decide(gate[3], event, policy)
                        if decision.action is _DROP or decision.message is None:
                            dropped[decision.reason] = dropped.get(decision.reason, 0) + 1
                            continue
                        message = decision.message
                    elif gate[4] is not None:  # stripped by the walk below
                        walk = gate[4]
                        seen = (state, required, walk)
                    else:  # what decide() strips, without the reason it names
                        message = _strip_tree(event, strip, [])
            if walk is None:
                result = protect(message)
                out = result.message
                for removal in result.removed:
                    fields_removed[removal.reason] = fields_removed.get(removal.reason, 0) + 1
            else:
                out = walk(message, lost)
                if lost:
                    if len(lost) > 1:
                        self._protector.sort(lost)  # counted in the rules' order
                    for removal in lost:
                        fields_removed[removal.reason] = fields_removed.get(removal.reason, 0) + 1
                    lost.clear()
            kept.append(out if type(out) is dict else dict(out))
        return suppressed

    def _merge(
        self, mine: str | None, theirs: str | None, event: dict[str, Any], merge: Header
    ) -> ConsentState | None:
        """Merge the header's update into the subjects; the state the gate then reads."""
        merge([s for s in (mine, theirs) if s is not None], event)
        state = None if mine is None else self._states.get(mine)
        if state is None and theirs is not None:
            state = self._states.get(theirs)
        return state

    def _suppressed(self, user: Any, device: Any, mine: str | None, theirs: str | None) -> bool:
        """``SuppressionList.is_suppressed`` for an event's ids and their pseudonyms."""
        ids = [i for i in (user, device) if isinstance(i, str) and i]
        subjects = [s for s in (mine, theirs) if s is not None]
        return self._suppression.is_suppressed(ids, subjects)  # type: ignore[union-attr]

    def _gate(
        self, state: ConsentState, policy: GatePolicy, upstream: bool, gates: dict[int, _Gate]
    ) -> _Gate:
        """What the gate needs of ``state`` under ``policy``, worked out once per state.

        A state is immutable and a new one replaces it on every change, so an entry is valid
        for as long as it names the very state object it was made from.
        """
        if upstream and state.regime is not _OPT_OUT:
            # The reference path reads an upstream-checked source's subject under opt-out.
            effective = state.model_copy(update={"regime": _OPT_OUT})
        else:
            effective = state
        granted = effective.granted()
        plan = policy._compiled.plan(granted)
        strip: Any = None
        both = None
        if plan is not None:
            strip = plan.tree if plan.tree is not None and not plan.others else _GENERAL
            if strip is not _GENERAL and self._protector.walker is not None:
                both = self._protector.stripping(strip)
        if len(gates) >= _CACHE_SIZE:
            gates.clear()
        found = gates[id(state)] = (state, granted, strip, effective, both)
        return found

    def _gates_of(self, policy: GatePolicy) -> dict[int, _Gate]:
        entry = self._gates.get(id(policy))
        if entry is None or entry[0] is not policy:
            entry = self._gates[id(policy)] = (policy, {})
        return entry[1]
