"""The consent gate: given a subject's consent and a message, allow it, strip it, or drop it.

:func:`decide` is a pure function of (state, message, policy), used by both SDK and collector.
Every decision carries a short, stable reason code for callers to count, so nothing is dropped
silently:

=====================  ========  ==========================================================
reason                 action    meaning
=====================  ========  ==========================================================
``consent_message``    allow     a "Consent Updated" event; always allowed
``necessary``          allow     the message needs only ``necessary``
``granted``            allow     every purpose it needs is granted
``opt_out_default``    allow     no consent state, and the policy's regime is opt-out
``strip:<purpose>``    strip     allowed, but fields tied to a purpose that is not granted
                                 were removed (the first such purpose is named)
``no_consent``         drop      no consent state, and the policy's regime is opt-in
``denied:<purpose>``   drop      a purpose it needs is not granted (the first is named)
=====================  ========  ==========================================================

Purposes are named in their canonical order (necessary, analytics, personalization, marketing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Final, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from journeykit.consent._fieldpaths import (
    DELETE,
    EACH,
    MISSING,
    FieldPath,
    edit,
    lookup,
    parse_path,
    replace,
)
from journeykit.consent.errors import InvalidConsentSignal
from journeykit.consent.purposes import ALL_PURPOSES, Purpose
from journeykit.consent.signals import CONSENT_EVENT
from journeykit.consent.state import ConsentState, Regime

__all__ = [
    "DEFAULT_POLICY",
    "REASON_CODES",
    "Action",
    "Decision",
    "GatePolicy",
    "decide",
    "may_personalize",
]

_N, _A, _P, _M = Purpose.NECESSARY, Purpose.ANALYTICS, Purpose.PERSONALIZATION, Purpose.MARKETING


class Action(StrEnum):
    """What to do with a message."""

    ALLOW = "allow"
    STRIP = "strip"
    DROP = "drop"


REASON_CODES: Final[tuple[str, ...]] = tuple(
    sorted(
        {"consent_message", "necessary", "granted", "opt_out_default", "no_consent"}
        | {f"denied:{p.value}" for p in ALL_PURPOSES if p is not _N}
        | {f"strip:{p.value}" for p in ALL_PURPOSES if p is not _N}
    )
)
"""Every reason code :func:`decide` can return, for registering counters up front."""


class Decision(NamedTuple):
    """The gate's verdict on one message.

    Attributes:
        action: allow, strip or drop.
        reason: a stable reason code (see the module docstring).
        message: what to pass on: the input itself for allow, a new dict for strip (sharing
            everything that did not change), ``None`` for drop.
        stripped: the configured paths that removed at least one field.
    """

    action: Action
    reason: str
    message: Mapping[str, Any] | None
    stripped: tuple[str, ...] = ()


_DEFAULT_TYPES: Final = {
    "track": (_A,),
    "page": (_A,),
    "screen": (_A,),
    "identify": (_A,),
    "group": (_A,),
    "alias": (_A,),
    "decision": (_P,),
}


class GatePolicy(BaseModel):
    """Which purposes each message needs, and which fields go when a purpose is not granted.

    For a message, the required purposes are ``event_purposes[event]`` if its event name is
    listed there, else ``type_purposes[type]``, else ``default_purposes``; a name in
    ``marketing_events`` adds ``marketing``.

    Attributes:
        regime: how to treat a subject with no consent state at all. A subject that has a state
            is read under that state's own regime.
        type_purposes: purposes needed per message type; ``decision`` is a personalization
            request (see :func:`may_personalize`).
        event_purposes: purposes needed per event name, replacing the type's (e.g.
            ``{"Password Reset": ["necessary"]}`` for a necessary-only event).
        marketing_events: event names that also need ``marketing`` (default: none).
        default_purposes: purposes needed by a message of a type not listed.
        strip: per purpose, the fields removed when it is not granted but the message is
            otherwise allowed. Paths as in pseudonymization: ``context.device.advertisingId``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    regime: Regime = Regime.OPT_IN
    type_purposes: Mapping[str, frozenset[Purpose]] = Field(
        default_factory=lambda: {k: frozenset(v) for k, v in _DEFAULT_TYPES.items()}
    )
    event_purposes: Mapping[str, frozenset[Purpose]] = Field(default_factory=dict)
    marketing_events: frozenset[str] = frozenset()
    default_purposes: frozenset[Purpose] = frozenset({_A})
    strip: Mapping[Purpose, tuple[str, ...]] = Field(
        default_factory=lambda: {
            _M: ("context.device.advertisingId", "context.ip", "context.userAgent"),
        }
    )

    @field_validator("strip")
    @classmethod
    def _paths_parse(cls, value: Mapping[Purpose, tuple[str, ...]]) -> Any:
        for paths in value.values():
            for path in paths:
                parse_path(path)
        return value

    # A cached_property, not pydantic private attributes: those are read through __getattr__,
    # which costs microseconds per access on the gate's hot path.
    @cached_property
    def _compiled(self) -> _Compiled:
        """Lookups precomputed in canonical purpose order, so :func:`decide` only reads."""
        events = dict(self.event_purposes)
        for name in self.marketing_events:
            base = events.get(name, self.type_purposes.get("track", self.default_purposes))
            events[name] = frozenset(base) | {_M}
        return _Compiled(
            by_event={e: _ordered(ps) for e, ps in events.items()},
            by_type={t: _ordered(ps) for t, ps in self.type_purposes.items()},
            default=_ordered(self.default_purposes),
            strip=tuple(
                (p, tuple((path, parse_path(path)) for path in self.strip[p]))
                for p in ALL_PURPOSES
                if self.strip.get(p)
            ),
        )

    def required(self, message: Mapping[str, Any]) -> tuple[Purpose, ...]:
        """The purposes ``message`` needs besides ``necessary``, in canonical order.

        An empty tuple means the message needs only ``necessary``.
        """
        compiled = self._compiled
        event = message.get("event")
        kind = message.get("type")
        if type(event) is str and kind == "track":
            found = compiled.by_event.get(event)
            if found is not None:
                return found
        if type(kind) is str:
            return compiled.by_type.get(kind, compiled.default)
        return compiled.default


_Strip = tuple[Purpose, str, FieldPath, bool]
"""One path to strip: its purpose, its text, its parsed form, and whether it has no ``[]``."""

_Tree = tuple[tuple[str, "_Tree | int"], ...]
"""Keys to look for at one level, each with the subtree below it or the index of its step."""


class _Plan(NamedTuple):
    """What to strip for one set of granted purposes.

    ``steps`` in policy order (canonical purpose order, then the policy's path order). When no
    path equals or extends another, the paths without ``[]`` are also a ``tree`` walked once
    per message (``others`` are the indexes of the remaining steps); otherwise ``tree`` is
    ``None`` and the steps are applied one by one, since their order matters then.
    """

    steps: tuple[_Strip, ...]
    tree: _Tree | None
    others: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Compiled:
    by_event: dict[str, tuple[Purpose, ...]]
    by_type: dict[str, tuple[Purpose, ...]]
    default: tuple[Purpose, ...]
    strip: tuple[tuple[Purpose, tuple[tuple[str, FieldPath], ...]], ...]
    # What to strip for each set of granted purposes (at most 2**3 of them), worked out the
    # first time a subject with that set is seen.
    plans: dict[frozenset[Purpose], _Plan | None] = field(default_factory=dict)

    def plan(self, granted: frozenset[Purpose]) -> _Plan | None:
        """What to strip when exactly ``granted`` is granted; ``None``: nothing."""
        try:
            return self.plans[granted]
        except KeyError:
            steps = tuple(
                (purpose, text, path, EACH not in path)
                for purpose, paths in self.strip
                if purpose not in granted
                for text, path in paths
            )
            found = _plan(steps) if steps else None
            self.plans[granted] = found  # a race only computes the same value twice
            return found


def _plan(steps: tuple[_Strip, ...]) -> _Plan:
    paths = [step[2] for step in steps]
    for i, a in enumerate(paths):
        for b in paths[i + 1 :]:
            if a[: len(b)] == b or b[: len(a)] == a:
                return _Plan(steps, None, ())
    root: dict[Any, Any] = {}
    for index, (_, _, path, simple) in enumerate(steps):
        if simple:
            node = root
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = index
    others = tuple(i for i, step in enumerate(steps) if not step[3])
    return _Plan(steps, _freeze(root), others)


def _freeze(node: dict[Any, Any]) -> _Tree:
    return tuple(
        (key, below if type(below) is int else _freeze(below)) for key, below in node.items()
    )


def _strip_tree(node: Mapping[str, Any], tree: _Tree, hits: list[int]) -> Any:
    """``node`` without the tree's paths: itself if none was there, else a copy."""
    copy: dict[str, Any] | None = None
    for key, below in tree:
        if key not in node:
            continue
        if type(below) is int:
            hits.append(below)
            if copy is None:
                copy = dict(node)
            del copy[key]
            continue
        value = node[key]
        if type(value) is not dict and not isinstance(value, Mapping):
            continue
        result = _strip_tree(value, below, hits)  # type: ignore[arg-type]
        if result is not value:
            if copy is None:
                copy = dict(node)
            copy[key] = result
    return node if copy is None else copy


def _ordered(purposes: frozenset[Purpose]) -> tuple[Purpose, ...]:
    # necessary is always granted, so the gate never checks it: necessary-only becomes ().
    return tuple(p for p in ALL_PURPOSES if p in purposes and p is not _N)


DEFAULT_POLICY: Final = GatePolicy()

_ALLOW, _STRIP, _DROP = Action.ALLOW, Action.STRIP, Action.DROP
_OPT_OUT = Regime.OPT_OUT
_DENIED: Final = {p: f"denied:{p.value}" for p in ALL_PURPOSES}
_STRIPPED: Final = {p: f"strip:{p.value}" for p in ALL_PURPOSES}


def decide(
    state: ConsentState | None,
    message: Mapping[str, Any],
    policy: GatePolicy = DEFAULT_POLICY,
) -> Decision:
    """Decide whether ``message`` may be processed under ``state``.

    Args:
        state: the subject's consent, or ``None`` if nothing is known about them.
        message: a message in Segment wire format; never mutated.
        policy: what each message needs; defaults to :data:`DEFAULT_POLICY`.

    Returns:
        A :class:`Decision` with a reason code from :data:`REASON_CODES`.
    """
    if type(message) is not dict and not isinstance(message, Mapping):
        raise InvalidConsentSignal("message", f"expected an object, got a {type(message).__name__}")
    event = message.get("event")
    if event == CONSENT_EVENT and message.get("type") == "track":
        return Decision(_ALLOW, "consent_message", _consent_only(message))
    # policy.required(message), inlined: this runs for every message.
    compiled = policy._compiled
    kind = message.get("type")
    # Event names are a track's: an identify or page with an "event" key is no track.
    named = type(event) is str and kind == "track"
    required = compiled.by_event.get(event) if named and type(event) is str else None
    if required is None:
        required = compiled.by_type.get(kind, compiled.default) if type(kind) is str else None
        if required is None:
            required = compiled.default
    if state is None:
        if policy.regime is _OPT_OUT:
            reason = "necessary" if not required else "opt_out_default"
            return Decision(_ALLOW, reason, message)
        if required:
            return Decision(_DROP, "no_consent", None)
        granted: frozenset[Purpose] = frozenset()  # a necessary event of nobody known
    else:
        granted = state.granted()  # computed once per state: a new state is a new version
        for purpose in required:
            if purpose not in granted:
                return Decision(_DROP, _DENIED[purpose], None)
    allowed = "granted" if required else "necessary"
    # A necessary event passes whatever the consent, but not with what marketing needs.
    plan = compiled.plan(granted)
    if plan is None:
        return Decision(_ALLOW, allowed, message)
    hits: list[int] = []
    if plan.tree is None:
        out = message
        for index in range(len(plan.steps)):
            out = _strip_step(out, plan.steps[index], index, hits)
    else:
        out = _strip_tree(message, plan.tree, hits)
        for index in plan.others:
            out = _strip_step(out, plan.steps[index], index, hits)
    if not hits:
        return Decision(_ALLOW, allowed, message)
    hits.sort()
    # Steps are in canonical purpose order: the first hit names the first purpose.
    reason = _STRIPPED[plan.steps[hits[0]][0]]
    return Decision(_STRIP, reason, out, tuple(plan.steps[i][1] for i in hits))


_CONSENT_FIELDS = frozenset({"purposes", "notice_version", "source"})
_CONSENT_KEYS = frozenset(
    {
        "type",
        "event",
        "properties",
        "context",
        "userId",
        "anonymousId",
        "messageId",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "receivedAt",
        "integrations",
        "writeKey",
        "_source",
        "version",
    }
)
"""What a consent message may hold besides its choice: who, when, and how it was sent."""
_CONSENT_CONTEXT = frozenset(
    {"ip", "userAgent", "consent", "consentManagement", "library", "locale", "timezone"}
)
"""Context a consent message keeps: the ledger's evidence (ip, user agent) and the signals."""


def _consent_only(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """A consent message as it may pass without consent: the choice, and nothing else.

    It always passes (a withdrawal must arrive), so it must not carry what other events need
    consent for: properties other than the choice's, traits, page URLs, locations, devices,
    unknown fields (anything could be put there). Kept: the ids and times, and the IP address
    and user agent, which with the notice version are the ledger's evidence of how the choice
    was collected.
    """
    props = message.get("properties")
    context = message.get("context")
    extra_props = isinstance(props, Mapping) and not _CONSENT_FIELDS.issuperset(props)
    extra_context = isinstance(context, Mapping) and not _CONSENT_CONTEXT.issuperset(context)
    if not extra_props and not extra_context and _CONSENT_KEYS.issuperset(message):
        return message  # the usual case: as the SDK and the banner build it
    out = {k: v for k, v in message.items() if k in _CONSENT_KEYS}
    if extra_props and isinstance(props, Mapping):
        out["properties"] = {k: v for k, v in props.items() if k in _CONSENT_FIELDS}
    if extra_context and isinstance(context, Mapping):
        out["context"] = {k: v for k, v in context.items() if k in _CONSENT_CONTEXT}
    return out


def _strip_step(out: Mapping[str, Any], step: _Strip, index: int, hits: list[int]) -> Any:
    _, _, path, simple = step
    if simple:
        changed = out if lookup(out, path) is MISSING else replace(out, path, DELETE)
    else:
        changed = edit(out, path, _delete)
    if changed is not out:
        hits.append(index)
    return changed


def may_personalize(state: ConsentState | None, policy: GatePolicy = DEFAULT_POLICY) -> bool:
    """Whether a personalization request (a ``decision``) may use this subject's data."""
    return decide(state, _DECISION_REQUEST, policy).action is not _DROP


_DECISION_REQUEST: Final = {"type": "decision"}


def _delete(_value: Any) -> object:
    return DELETE
