"""The privacy step's fused path for the usual event: no consent signal in it or its request.

Most events of a batch carry no consent signal, and most of their subjects share a consent
state (``None``, under opt-out, for every subject that never chose). For those, what
``PrivacyStep.process_reference`` does per event (ids, the suppression check, signal parsing,
the store, the gate, pseudonymization) is done here in one loop over the batch, with:

- subject pseudonyms from a memo read inline (:class:`~journeykit.consent._compiled.IdPseudonyms`);
- "no signal" told apart with the same few lookups ``parse_message`` starts with;
- the gate's required purposes read from the policy's compiled tables; a per-state granted set
  (the state's own, or, for upstream-checked sources, that of its opt-out copy, made once per
  state); the general :func:`~journeykit.consent.decide` only when something may be stripped;
- pseudonymization by a :class:`~journeykit.consent._compiled.Protector`, one walk with a memo
  per field.

Any event with a signal, and every event of a request with ``Sec-GPC``, takes the reference
path; ``tests/collector/test_privacy_fast.py`` checks that both give the same outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from journeykit.collector.suppression import SuppressionList
from journeykit.consent import (
    CONSENT_EVENT,
    ConsentState,
    GatePolicy,
    Purpose,
    Regime,
    Removal,
    decide,
)
from journeykit.consent import gate as _gate
from journeykit.consent._compiled import IdPseudonyms, Protector, walk

__all__ = ["FusedStep"]

_OPT_OUT: Final = Regime.OPT_OUT
_DROP: Final = _gate.Action.DROP
_CACHE_SIZE: Final = 8_192

_GENERAL: Any = object()  # strip through decide(): paths that overlap or go through lists
_strip_tree = _gate._strip_tree

_Gate = tuple[ConsentState, frozenset[Purpose], Any, ConsentState]
"""A state; the purposes granted under it; its strip tree, ``_GENERAL`` or ``None`` (nothing
to strip); the state the gate reads (the state, or its opt-out copy for upstream sources)."""

Slow = Callable[[int, dict[str, Any]], None]
"""The reference path for one event, recording into the same outcome."""


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
    ) -> int:
        """Process ``events`` into ``kept`` and the counters; returns how many were suppressed.

        ``dropped`` and ``fields_removed`` are the outcome's counters (a missing key reads 0).
        """
        memo, new_id = self._ids.memo, self._ids
        states = self._states
        suppression = self._suppression
        # The list as it is at the start of the batch (it changes by whole copies): empty, the
        # usual case, it has nothing to check per event.
        suppressing = suppression is not None and len(suppression) > 0
        compiled = policy._compiled
        by_event, by_type, default = compiled.by_event, compiled.by_type, compiled.default
        opt_out = policy.regime is _OPT_OUT
        gates = self._gates_of(policy)
        tree = self._protector.tree
        protect = self._protector.protect
        suppressed = 0
        lost: list[Removal] = []  # one list for the batch: emptied after each event's removals
        for index, event in events:
            name = event.get("event")
            context = event.get("context")
            if name == CONSENT_EVENT or (
                type(context) is dict and ("consent" in context or "consentManagement" in context)
            ):
                slow(index, event)  # a consent signal: recorded by the reference path
                continue
            state = None
            # The subjects' pseudonyms are needed to look them up: not at all while nobody
            # chose (under opt-out, the usual case) and nobody is suppressed.
            if states or suppressing:
                user = event.get("userId")
                device = event.get("anonymousId")
                if suppressing:
                    # PrivacyStep._ids and the pseudonyms of the ids, inlined.
                    ids = []
                    subjects = []
                    if isinstance(user, str) and user:
                        ids.append(user)
                        subjects.append(memo.get(user) or new_id(user))
                    if isinstance(device, str) and device:
                        ids.append(device)
                        subjects.append(memo.get(device) or new_id(device))
                    if suppression.is_suppressed(ids, subjects):  # type: ignore[union-attr]
                        suppressed += 1
                        continue
                    for subject in subjects:
                        state = states.get(subject)
                        if state is not None:
                            break
                else:  # ConsentStore.state: the user's state, else the device's
                    if isinstance(user, str) and user:
                        state = states.get(memo.get(user) or new_id(user))
                    if state is None and isinstance(device, str) and device:
                        state = states.get(memo.get(device) or new_id(device))
            # decide(state, event, policy), inlined up to the strip plan.
            required = by_event.get(name) if type(name) is str else None
            if required is None:
                kind = event.get("type")
                required = by_type.get(kind, default) if type(kind) is str else default
            message: Any = event
            if required:
                if state is None:
                    if not opt_out:
                        dropped["no_consent"] = dropped.get("no_consent", 0) + 1
                        continue
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
                    if strip is not None:
                        if strip is _GENERAL:
                            decision = decide(gate[3], event, policy)
                            if decision.action is _DROP or decision.message is None:
                                dropped[decision.reason] = dropped.get(decision.reason, 0) + 1
                                continue
                            message = decision.message
                        else:  # what decide() strips, without the reason it names
                            message = _strip_tree(event, strip, [])
            if tree is None:
                result = protect(message)
                out = result.message
                for removal in result.removed:
                    fields_removed[removal.reason] = fields_removed.get(removal.reason, 0) + 1
            else:
                out = walk(message, tree, lost)
                if lost:
                    if len(lost) > 1:
                        self._protector.sort(lost)  # counted in the rules' order
                    for removal in lost:
                        fields_removed[removal.reason] = fields_removed.get(removal.reason, 0) + 1
                    lost.clear()
            kept.append(out if type(out) is dict else dict(out))
        return suppressed

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
        if plan is not None:
            strip = plan.tree if plan.tree is not None and not plan.others else _GENERAL
        if len(gates) >= _CACHE_SIZE:
            gates.clear()
        found = gates[id(state)] = (state, granted, strip, effective)
        return found

    def _gates_of(self, policy: GatePolicy) -> dict[int, _Gate]:
        entry = self._gates.get(id(policy))
        if entry is None or entry[0] is not policy:
            entry = self._gates[id(policy)] = (policy, {})
        return entry[1]
