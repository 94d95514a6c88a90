"""What happens to a message between the call and the queue: the consent gate, then
pseudonymization. Nothing a subject did not consent to, and no personal field in clear, is
ever queued, so nothing of it can leave the process.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from journeykit.consent import (
    CONSENT_EVENT,
    Action,
    ConsentUpdate,
    FieldKind,
    HashMode,
    Pseudonymizer,
    PseudonymKey,
    PseudonymKeyError,
    Regime,
    pseudonymize_message,
)
from journeykit.consent import gate as _gate
from journeykit.consent import pseudonymize as _pseudo
from journeykit.consent._fieldpaths import DELETE
from journeykit.sdk import _ids
from journeykit.sdk._consent import USER, ConsentBook, ConsentResolver
from journeykit.sdk._settings import ClientSettings

__all__ = ["Privacy", "Verdict"]

log = logging.getLogger("journeykit")

_DROP, _STRIP = Action.DROP, Action.STRIP

_DETAILS = {
    "no_consent": "no consent is known for this subject, and the regime is opt-in",
    "consent_error": "the consent_resolver raised (logged); no event is sent without consent",
}


class Verdict(NamedTuple):
    """What to queue, or why not.

    Attributes:
        message: the message to queue (possibly stripped and pseudonymized); ``None`` to drop.
        reason: the gate's reason code (a drop reason when ``message`` is ``None``).
        detail: a sentence for people, for drops.
        removed: reason codes of fields removed from a message still sent, one per field.
    """

    message: Mapping[str, Any] | None
    reason: str
    detail: str = ""
    removed: tuple[str, ...] = ()


class Privacy:
    """The consent gate and pseudonymization, as configured for one client.

    Raises:
        PseudonymKeyError: pseudonymization is on, the rules need a key, and none was given
            (``pseudonymizer``, ``pseudonym_key``) or found in the environment.
    """

    def __init__(
        self,
        settings: ClientSettings,
        resolver: ConsentResolver | None = None,
        pseudonymizer: Pseudonymizer | None = None,
    ) -> None:
        self.consents = ConsentBook(settings.policy, settings.max_consent_subjects, resolver)
        self._rules = settings.pseudonym_rules
        self._pseudonymize = settings.pseudonymize
        self._pseudonymizer = _pseudonymizer(settings, pseudonymizer)
        self._policy = policy = settings.policy
        self._compiled = policy._compiled
        self._opt_out = policy.regime is Regime.OPT_OUT
        self._resolver = resolver
        # What the fused track path needs, worked out once (None: take the general path).
        self._strips: dict[frozenset[Any], tuple[Any, Any] | None] = {}
        self._pseudo_branch = _pseudo_branch(settings) if settings.pseudonymize else _NOTHING
        self._hashers = (
            None,
            _pseudo._plain_sha256,
            None if self._pseudonymizer is None else self._pseudonymizer._cached,
        )
        self._rule_order = {rule[0]: i for i, rule in enumerate(self._rules._compiled)}
        self._states = self.consents.states
        self._leaves = _flat_leaves(self._pseudo_branch, self._pseudonymizer)

    def after_fork(self) -> None:
        """In a forked child: reset the locks a thread of the parent may have held.

        Also forgets the parent's unused message ids, for forks that skip the at-fork hooks
        (the client calls this when it sees a new pid).
        """
        self.consents.after_fork()
        _ids.reset()

    def record(self, update: ConsentUpdate) -> None:
        """Remember a consent change for the messages that follow."""
        self.consents.record(update)

    def apply(self, message: Mapping[str, Any]) -> Verdict:
        """Gate ``message``, then pseudonymize what may be sent; never mutates ``message``."""
        decision = self.consents.decide(message)
        if decision.action is _DROP or decision.message is None:
            reason = decision.reason
            detail = _DETAILS.get(reason) or f"{reason.partition(':')[2]} is not granted"
            return Verdict(None, reason, detail)
        out = decision.message
        removed: tuple[str, ...] = ()
        if decision.action is _STRIP:
            removed = (decision.reason,) * len(decision.stripped)
        if self._pseudonymize:
            result = pseudonymize_message(out, self._rules, self._pseudonymizer)
            out = result.message
            if result.removed:
                removed += _reported(result.removed, out.get("messageId"))
        return Verdict(out, decision.reason, "", removed)

    def apply_track(self, message: dict[str, Any], own: bool = False) -> Verdict | None:
        """:meth:`apply` for a new message of the fused track path's shape, or ``None``.

        Unlike :meth:`apply`, it may replace ``message["properties"]`` (never before
        returning ``None``), and with ``own`` (the properties are a new dict of the caller's
        own) change that dict in place.

        The shape: exactly the keys ``type`` ("track"), ``messageId``, ``timestamp``,
        ``context`` (``{"library": ...}`` only), ``userId`` (a string), ``event`` (a string)
        and ``properties`` (a dict). Only the gate's and the pseudonymization rules' branches
        under ``properties`` can then touch it, so only they are walked, with the same walks
        and the same results as :meth:`apply` (a test compares both). ``None`` when the
        configuration could touch another key of the shape (the caller then takes
        :meth:`apply`), or when a ``consent_resolver`` must be asked.
        """
        if self._resolver is not None or self._pseudo_branch is None:
            return None
        event = message["event"]
        if event == CONSENT_EVENT:
            return None
        compiled = self._compiled
        required = compiled.by_event.get(event)
        if required is None:
            required = compiled.by_type.get("track", compiled.default)
        reason = "necessary"
        strip: Any = None
        if required:
            # ConsentBook.local(user_id, None), inlined: see there why no lock is taken.
            states = self._states
            key = (USER, message["userId"])
            entry = states.get(key)
            if entry is None:
                if not self._opt_out:
                    return Verdict(None, "no_consent", _DETAILS["no_consent"])
                reason = "opt_out_default"
            else:
                try:  # noqa: SIM105 - contextlib.suppress costs a context manager per call
                    states.move_to_end(key)
                except KeyError:  # forgotten by record() since it was read
                    pass
                granted = entry[1]
                for purpose in required:
                    if purpose not in granted:
                        why = _gate._DENIED[purpose]
                        return Verdict(None, why, f"{purpose.value} is not granted")
                reason = "granted"
                try:
                    strip = self._strips[granted]
                except KeyError:
                    strip = self._strips[granted] = _strip_branch(compiled.plan(granted))
                if strip is _SLOW:
                    return None
        # The message is the caller's own new dict: its properties are replaced in place (the
        # application's properties object itself is never mutated, the walks copy on write).
        props = original = message["properties"]
        removed: tuple[str, ...] = ()
        if strip is not None:
            branch, plan = strip
            hits: list[int] = []
            stripped = _gate._strip_tree(props, branch, hits)
            if hits:
                hits.sort()
                reason = _gate._STRIPPED[plan.steps[hits[0]][0]]
                removed = (reason,) * len(hits)
                message["properties"] = props = stripped
        leaves = self._leaves
        if leaves is not None:
            lost: list[_pseudo.Removal] | None = None
            copy: dict[str, Any] | None = props if own or props is not original else None
            for key, leaf, hmac, memo in leaves:
                value = props.get(key)
                if value is None:  # absent or None: nothing to protect, as in _walk
                    continue
                # The usual field, a string that is no pseudonym yet under an HMAC rule for an
                # email or an id, is normalised and hashed here: Pseudonymizer._pseudonymize,
                # inlined, with its own memo. Anything else takes the general _protect.
                if type(value) is str and hmac is not None and not value.startswith(_PREFIXES):
                    result = memo.get(value)
                    if result is None:
                        inner = hmac._inner.copy()
                        data = value.strip() if leaf.kind is _ID else value.strip().lower()
                        inner.update(data.encode())
                        outer = hmac._outer.copy()
                        outer.update(inner.digest())
                        result = hmac.prefix + outer.hexdigest()
                        if len(memo) >= _MEMO_SIZE:
                            memo.clear()  # a new start beats bookkeeping an order per hit
                        memo[value] = result
                else:
                    if lost is None:
                        lost = []
                    result = _pseudo._protect(
                        value, leaf.kind, self._hashers[leaf.how], leaf.text, lost
                    )
                    if result is value:
                        continue
                if copy is None:
                    copy = dict(props)  # copy on write: never the application's own dict
                if result is DELETE:
                    del copy[key]
                else:
                    copy[key] = result
            if copy is not None:
                message["properties"] = copy
            if lost:
                if len(lost) > 1:
                    lost.sort(key=lambda removal: self._rule_order[removal.path])
                removed += _reported(lost, message["messageId"])
        else:
            branch = self._pseudo_branch
            if branch is not _NOTHING:
                lost = []
                protected = _pseudo._walk(props, branch, self._hashers, lost)
                if protected is not props:
                    message["properties"] = protected
                if lost:
                    if len(lost) > 1:
                        lost.sort(key=lambda removal: self._rule_order[removal.path])
                    removed += _reported(lost, message["messageId"])
        return _new_verdict(Verdict, (message, reason, "", removed))


_new_verdict = tuple.__new__  # Verdict(...) without the named tuple's Python-level __new__
_MEMO_SIZE: Final = Pseudonymizer.CACHE_SIZE
_PREFIXES: Final = ("hmac-sha256:", "sha256:")  # a tagged value is never hashed twice
_EMAIL, _ID = FieldKind.EMAIL, FieldKind.ID


def _reported(removals: Any, message_id: object) -> tuple[str, ...]:
    for path, why in removals:
        log.warning(
            "journeykit: removed %s from event %s (%s): it cannot be pseudonymized",
            path,
            message_id,
            why,
        )
    return tuple(why for _, why in removals)


# The fused track path reads the compiled forms of journeykit.consent's gate and
# pseudonymization rules directly: they ship together, and tests/sdk/test_fast_track.py checks
# that both paths give the same result.

_SLOW: Any = object()  # the configuration can touch more than properties: take apply()
_NOTHING: Any = ()  # an empty tree: nothing to walk
_OWN_KEYS = frozenset({"type", "messageId", "timestamp", "userId", "event"})


def _branch(tree: Any) -> Any:
    """The subtree under ``properties``; ``_NOTHING``; or ``_SLOW`` if more could be touched.

    Keys the shape never has (``traits``, ``anonymousId``, ...) are skipped; a path to a key it
    always has, to the whole ``context`` or ``properties``, or into ``context.library`` means
    the general path.
    """
    found = _NOTHING
    for key, below in tree:
        leaf = type(below) is int or type(below) is _pseudo._Leaf
        if key in _OWN_KEYS:
            return _SLOW
        if key == "context":
            if leaf or any(name == "library" for name, _ in below):
                return _SLOW
        elif key == "properties":
            if leaf:
                return _SLOW
            found = below
    return found


def _strip_branch(plan: Any) -> Any:
    if plan is None:
        return None
    if plan.tree is None or plan.others:
        return _SLOW
    found = _branch(plan.tree)
    if found is _SLOW:
        return _SLOW
    return None if found is _NOTHING else (found, plan)


def _pseudo_branch(settings: ClientSettings) -> Any:
    tree = settings.pseudonym_rules._tree
    if tree is None or tree[1]:
        return None
    found = _branch(tree[0])
    return None if found is _SLOW else found


def _flat_leaves(branch: Any, pseudonymizer: Pseudonymizer | None) -> Any:
    """``(key, rule, HMAC state or None, memo)`` per rule when every rule under ``properties``
    is a key of it (no deeper path); ``None`` otherwise, and when there is nothing to walk.

    The HMAC state is given for keyed rules on emails and ids (whose normalisation is a
    ``strip``, and a ``lower`` for emails) under our own :class:`Pseudonymizer`: the fused path
    hashes those inline, and keeps recent pseudonyms in the rule's memo, a plain dict read
    inline, which costs less than the Pseudonymizer's LRU cache (a call, a key tuple, a linked
    node) on a hit and on a miss. Both hold results of the same pure function.
    """
    if branch is None or branch is _NOTHING:
        return None
    if any(type(below) is not _pseudo._Leaf for _, below in branch):
        return None
    inline = type(pseudonymizer) is Pseudonymizer
    current = pseudonymizer._current if inline else None  # type: ignore[union-attr]
    return tuple(
        (
            key,
            leaf,
            current if leaf.how == _pseudo._HMAC_HOW and leaf.kind in (_EMAIL, _ID) else None,
            {},
        )
        for key, leaf in branch
    )


def _pseudonymizer(settings: ClientSettings, given: Pseudonymizer | None) -> Pseudonymizer | None:
    if not settings.pseudonymize:
        if given is not None:
            raise ValueError("a pseudonymizer was given, but pseudonymize=False")
        return None
    if given is not None:
        if settings.pseudonym_key is not None:
            raise ValueError("give a pseudonymizer or a pseudonym_key, not both")
        return given
    if settings.pseudonym_key is not None:
        key = PseudonymKey(key_id=settings.pseudonym_key_id, secret=settings.pseudonym_key)
        return Pseudonymizer([key])
    rules = settings.pseudonym_rules.fields
    if all(r.kind is FieldKind.IP or r.mode is HashMode.SHA256 for r in rules):
        return None  # nothing to key: IP truncation and plain hashes only
    try:
        return Pseudonymizer.from_env()
    except PseudonymKeyError as exc:
        raise PseudonymKeyError(
            f"{exc}. The SDK pseudonymizes emails and phone numbers before they are queued: "
            "pass pseudonym_key=... or pseudonymizer=..., or pseudonymize=False to send them "
            "as they are"
        ) from None
