"""A compiled rules tree as Python code: one function per level, the tree's data as constants.

:func:`~journeykit.consent._compiled.walk` interprets the tree: for every field of a level it
unpacks a six-field tuple and branches on whether a rule ends there, for every message. The
collector protects every accepted event under the same tree, and that interpretation was
about half the cost of protecting one (``bench/privacy_step.py``). :func:`generate` writes
what ``walk`` does for one particular tree as straight-line code, so only the message's own
lookups are left at run time. Given the gate's strip plan too, the same walk takes away the
fields of the purposes not granted (``Sec-GPC: 1`` denies marketing: the IP and user agent go),
where stripping then protecting would copy the objects on the way twice.

The source holds no value of the configuration: keys, memos and rules are names bound to
constants in the functions' globals (``key_3``, ``memo_3``, ...), so a path with any
characters in it cannot change the code. :func:`generate` keeps the source it compiled on the
function (``__source__``), for a reader who wants to see it.
``tests/consent/test_protector.py`` checks that the result equals ``pseudonymize_message``
(after ``gate._strip_tree`` for a strip plan).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from journeykit.consent import pseudonymize as _pseudo
from journeykit.consent._fieldpaths import DELETE
from journeykit.consent.pseudonymize import Removal

__all__ = ["Walker", "generate"]

Walker = Callable[[Mapping[str, Any], list[Removal]], Any]
"""``walker(node, removed)``: ``node`` with the rules below it applied (itself if nothing
changed, else a copy), removals appended in walk order, as ``_compiled.walk`` gives them."""

# One field with a subtree below it. {n}: the field's number; {sub}: the subtree's function.
_BRANCH = """\
    value = node.get(key_{n})
    if value is not None:
        if type(value) is dict:
            result = value if keys_{n}.isdisjoint(value) else {sub}(value, removed)
        elif isinstance(value, Mapping):
            result = {sub}(value, removed)
        else:
            result = value
        if result is not value:
            if copy is None:
                copy = dict(node)
            copy[key_{n}] = result
"""

# One field where a rule ends: strings through the field's memo, anything else through the
# general function (numbers, objects, lists: rare).
_LEAF = """\
    value = node.get(key_{n})
    if value is not None:
        if type(value) is str:
            result = memo_{n}.get(value)
            if result is None:
                result = remember(value, leaf_{n}, hash_{n}, memo_{n})
            if result is not SAME:
                if copy is None:
                    copy = dict(node)
                if type(result) is Failed:
                    removed.append(Removal(text_{n}, result.reason))
                    del copy[key_{n}]
                else:
                    copy[key_{n}] = result
        else:
            result = protect(value, kind_{n}, hash_{n}, text_{n}, removed)
            if result is not value:
                if copy is None:
                    copy = dict(node)
                if result is DELETE:
                    del copy[key_{n}]
                else:
                    copy[key_{n}] = result
"""


# A key to strip (the gate's, for a purpose not granted): removed if it is there at all.
_DELETE = """\
    if key_{n} in node:
        if copy is None:
            copy = dict(node)
        del copy[key_{n}]
"""

_Entry = tuple[str, Any, Any]
"""One key of one level: ``("leaf", field, None)``, ``("delete", key, None)`` or
``("branch", key, (keys, entries))``."""


def generate(
    tree: tuple[Any, ...], same: object, failed: type, remember: Any, strip: Any = None
) -> Walker | None:
    """The walker of ``tree`` (a tuple of ``_compiled._Field``), as a compiled function.

    With ``strip`` (a tree of the gate's strip plan, ``gate._Tree``), the walker first takes
    away what it names, in the same walk: what ``gate._strip_tree`` and then the walker of
    ``tree`` alone give, with one copy of each object on the way instead of two. ``None``
    when a rule ends where a path to strip goes on below it (the rule would protect what is
    left of the object): the two walks are then made one after the other.

    ``same``, ``failed`` and ``remember`` are ``_compiled``'s memo markers and memo filler,
    passed in so that this module does not import the one that imports it.
    """
    entries = _merge(tree, strip)
    if entries is None:
        return None
    names: dict[str, Any] = {
        "Mapping": Mapping,
        "Removal": Removal,
        "DELETE": DELETE,
        "SAME": same,
        "Failed": failed,
        "remember": remember,
        "protect": _pseudo._protect,
    }
    sources: list[str] = []
    top = _level(entries, names, sources, itertools.count())
    source = "\n".join(sources)
    exec(compile(source, f"<journeykit walker {id(tree):x}>", "exec"), names)  # noqa: S102
    walker: Walker = names[top]
    walker.__source__ = source  # type: ignore[attr-defined]
    return walker


def _merge(fields: tuple[Any, ...], strip: Any) -> list[_Entry] | None:
    """One level's entries: the rules' fields, then the keys only ``strip`` names."""
    stripped = dict(strip or ())
    entries: list[_Entry] = []
    for field in fields:
        below_strip = stripped.pop(field.key, None)
        if type(below_strip) is int:  # stripped: the rules never see it
            entries.append(("delete", field.key, None))
        elif field.below is None:
            if below_strip is not None:
                return None  # a rule on an object that is stripped inside
            entries.append(("leaf", field, None))
        else:
            below = _merge(field.below, below_strip)
            if below is None:
                return None
            entries.append(("branch", field.key, (_keys(below), below)))
    entries.extend(_stripping(key, below) for key, below in stripped.items())
    return entries


def _stripping(key: str, below: Any) -> _Entry:
    """The entry of a key only the strip plan names (an int: the key itself goes)."""
    if type(below) is int:
        return ("delete", key, None)
    entries = [_stripping(k, b) for k, b in below]
    return ("branch", key, (_keys(entries), entries))


def _keys(entries: list[_Entry]) -> frozenset[str]:
    return frozenset(what.key if kind == "leaf" else what for kind, what, _ in entries)


def _level(
    entries: list[_Entry], names: dict[str, Any], sources: list[str], numbers: Iterator[int]
) -> str:
    """Write the function of one level (its subtrees' first); returns its name."""
    body = []
    for kind, what, below in entries:
        n = next(numbers)
        if kind == "delete":
            names[f"key_{n}"] = what
            body.append(_DELETE.format(n=n))
        elif kind == "branch":
            keys, sub_entries = below
            names[f"key_{n}"] = what
            names[f"keys_{n}"] = keys
            sub = _level(sub_entries, names, sources, numbers)
            body.append(_BRANCH.format(n=n, sub=sub))
        else:
            leaf = what.leaf
            names[f"key_{n}"] = what.key
            names[f"memo_{n}"] = what.memo
            names[f"leaf_{n}"] = leaf
            names[f"hash_{n}"] = what.hash_one
            names[f"kind_{n}"] = leaf.kind
            names[f"text_{n}"] = leaf.text
            body.append(_LEAF.format(n=n))
    name = f"level_{len(sources)}"
    sources.append(
        f"def {name}(node, removed):\n    copy = None\n"
        + "".join(body)
        + "    return node if copy is None else copy\n"
    )
    return name
