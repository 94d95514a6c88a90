"""Pseudonymization rules compiled for one set of keys: one walk, a memo per field.

:class:`Protector` gives exactly what :func:`~journeykit.consent.pseudonymize_message` gives
(the same message, sharing the same untouched branches, and the same removals in the same
order), at a fraction of its cost per message, for callers that protect many messages under
the same rules and keys (the collector's privacy step, for every accepted event).

Where the time goes otherwise: a function call per field through the pseudonymizer's LRU cache
(a key tuple, a linked node), a hashers tuple built per message, a generic walk. Here each
field of the rules' tree has its own memo, a plain dict from the value as sent to its
protected form (or to the reason it cannot be protected), read inline: pseudonyms, plain
hashes and IP truncations are pure functions of the value under fixed keys, so a memo hit
gives what a computation gives. A memo is emptied when it is full: a new start costs less than
keeping an order per hit. Like the pseudonymizer's cache, it holds raw values the process is
handling anyway, and never leaves the process. The walk runs as code generated for the tree
(:mod:`~journeykit.consent._walkcode`), :func:`walk` being its interpreted definition.

:class:`IdPseudonyms` is the same memo for subject ids (``userId``, ``anonymousId``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from journeykit.consent import pseudonymize as _pseudo
from journeykit.consent._fieldpaths import DELETE
from journeykit.consent._normalize import FieldKind
from journeykit.consent._walkcode import Walker, generate
from journeykit.consent.errors import PseudonymKeyError
from journeykit.consent.pseudonymize import (
    Pseudonymized,
    Pseudonymizer,
    PseudonymRules,
    Removal,
    pseudonymize_message,
)

__all__ = ["IdPseudonyms", "Protector"]

MEMO_SIZE: Final = Pseudonymizer.CACHE_SIZE
"""Values remembered per field (and per id memo) before the memo starts again."""

_SAME: Final = object()  # memo entry: the value is protected as it is (an IP already truncated)
_ID: Final = FieldKind.ID


class _Failed(NamedTuple):
    """Memo entry for a value that cannot be protected: removed, with this reason."""

    reason: str


class _Field(NamedTuple):
    """One key of one level of the compiled tree: a subtree below it, or a rule at its end."""

    key: str
    below: tuple[_Field, ...] | None  # None: a rule ends here
    keys: frozenset[str]  # the keys of ``below``: a node with none of them is skipped
    leaf: Any  # the rule (pseudonymize._Leaf) when below is None
    hash_one: Any  # what pseudonymize._protect is given for this rule
    memo: dict[str, Any]


class Protector:
    """``pseudonymize_message(message, rules, pseudonymizer)``, compiled once for many messages.

    Rules whose paths overlap, or go through lists (``[]``), are applied by
    :func:`~journeykit.consent.pseudonymize_message` itself.

    Raises:
        PseudonymKeyError: a rule needs a key and no ``pseudonymizer`` was given.
    """

    __slots__ = ("_order", "_pseudonymizer", "_rules", "_stripping", "_tree", "_walker")

    def __init__(self, rules: PseudonymRules, pseudonymizer: Pseudonymizer | None) -> None:
        if pseudonymizer is None and rules._needs_key:
            raise PseudonymKeyError("these rules use hmac-sha256 and need a Pseudonymizer")
        self._rules = rules
        self._pseudonymizer = pseudonymizer
        hashers = (
            None,
            _pseudo._plain_sha256,
            None if pseudonymizer is None else pseudonymizer._cached,
        )
        tree = rules._tree
        self._tree = None if tree is None or tree[1] else _compile(tree[0], hashers)
        self._walker = (
            None if self._tree is None else generate(self._tree, _SAME, _Failed, _remember)
        )
        self._stripping: dict[Any, Walker | None] = {}
        self._order = {rule[0]: i for i, rule in enumerate(rules._compiled)}

    @property
    def tree(self) -> tuple[_Field, ...] | None:
        """The compiled tree, or ``None`` when :meth:`protect` takes the general function."""
        return self._tree

    @property
    def walker(self) -> Walker | None:
        """:func:`walk` over :attr:`tree` as a compiled function (``None`` with no tree)."""
        return self._walker

    def stripping(self, strip: Any) -> Walker | None:
        """A walker that also takes away what the gate's strip tree ``strip`` names.

        Gives what ``gate._strip_tree`` then :attr:`walker` give, in one walk; ``None`` when
        the rules have no tree, or one of them protects an object that ``strip`` goes into.
        Made once per strip tree (a policy has at most one per set of granted purposes).
        """
        try:
            return self._stripping[strip]
        except KeyError:
            tree = self._tree
            found = None if tree is None else generate(tree, _SAME, _Failed, _remember, strip)
            self._stripping[strip] = found  # a race only makes the same walker twice
            return found

    def protect(self, message: Mapping[str, Any]) -> Pseudonymized:
        """``message`` with the rules' fields protected, as ``pseudonymize_message`` gives it."""
        walker = self._walker
        if walker is None:
            return pseudonymize_message(message, self._rules, self._pseudonymizer)
        removed: list[Removal] = []
        out = walker(message, removed)
        if not removed:
            return Pseudonymized(out, ())
        if len(removed) > 1:
            self.sort(removed)
        return Pseudonymized(out, tuple(removed))

    def sort(self, removed: list[Removal]) -> None:
        """Put removals found by :func:`walk` back in the rules' order, as one by one gives."""
        order = self._order
        removed.sort(key=lambda removal: order[removal.path])


def walk(node: Mapping[str, Any], tree: tuple[_Field, ...], removed: list[Removal]) -> Any:
    """``node`` with the tree's rules applied below it: itself if nothing changed, else a copy.

    The same result as ``pseudonymize._walk``; removals are appended in walk order. The
    definition of what :attr:`Protector.walker` does (``_walkcode``), interpreted.
    """
    copy: dict[str, Any] | None = None
    for key, below, keys, leaf, hash_one, memo in tree:
        value = node.get(key)
        if value is None:  # absent, or None, which is left as it is
            continue
        if below is not None:
            if type(value) is dict:
                if keys.isdisjoint(value):  # the usual properties: no rule's key in them
                    continue
            elif not isinstance(value, Mapping):
                continue  # not an object where the path goes on: nothing there to protect
            result = walk(value, below, removed)
            if result is value:
                continue
        elif type(value) is str:
            result = memo.get(value)
            if result is None:
                result = _remember(value, leaf, hash_one, memo)
            if result is _SAME:
                continue
            if type(result) is _Failed:
                removed.append(Removal(leaf.text, result.reason))
                result = DELETE
        else:  # numbers, objects, lists: rare, and the general function knows them
            result = _pseudo._protect(value, leaf.kind, hash_one, leaf.text, removed)
            if result is value:
                continue
        if copy is None:
            copy = dict(node)
        if result is DELETE:
            del copy[key]
        else:
            copy[key] = result
    return node if copy is None else copy


def _remember(value: str, leaf: Any, hash_one: Any, memo: dict[str, Any]) -> Any:
    """Protect ``value`` with the general function and keep what it gave in ``memo``."""
    lost: list[Removal] = []
    result = _pseudo._protect(value, leaf.kind, hash_one, leaf.text, lost)
    if result is DELETE:
        result = _Failed(lost[0].reason)
    elif result is value:
        result = _SAME
    if len(memo) >= MEMO_SIZE:
        memo.clear()
    memo[value] = result
    return result


def _compile(tree: Any, hashers: tuple[Any, ...]) -> tuple[_Field, ...]:
    out = []
    for key, below in tree:
        if type(below) is _pseudo._Leaf:
            out.append(_Field(key, None, frozenset(), below, hashers[below.how], {}))
        else:
            keys = frozenset(name for name, _ in below)
            out.append(_Field(key, _compile(below, hashers), keys, None, None, {}))
    return tuple(out)


class IdPseudonyms:
    """``pseudonymizer.pseudonymize(value, FieldKind.ID)`` with a memo read inline.

    Callers on a hot path read :attr:`memo` themselves (``memo.get(value) or ids(value)``).
    """

    __slots__ = ("memo", "pseudonymize")

    def __init__(self, pseudonymizer: Pseudonymizer) -> None:
        self.memo: dict[str, str] = {}
        self.pseudonymize = pseudonymizer.pseudonymize

    def __call__(self, value: str) -> str:
        found = self.memo.get(value)
        if found is None:
            found = self.pseudonymize(value, _ID)
            memo = self.memo
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[value] = found
        return found
