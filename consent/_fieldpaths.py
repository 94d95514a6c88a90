"""Dotted field paths (``traits.email``, ``properties.products[].sku``) and copy-on-write edits.

A path is a dot-separated list of object keys; a key followed by ``[]`` means "every item of
the list under this key". Editing a message along a path copies only the dicts and lists on the
way to a changed value: everything else is shared with the input, which is never mutated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["DELETE", "EACH", "MISSING", "FieldPath", "edit", "lookup", "parse_path", "replace"]

EACH: Final = object()
"""Path segment meaning "every item of this list"."""

DELETE: Final = object()
"""Returned by an edit function to remove the value (the key, or the list item)."""

MISSING: Final = object()
"""Returned by :func:`lookup` when nothing is at the path."""

FieldPath = tuple[object, ...]
"""A parsed path: object keys (``str``) and :data:`EACH` markers."""

Edit = Callable[[Any], Any]
"""Maps a value found at a path to its replacement: the same object, a new one, or DELETE."""

_SEGMENT: Final = re.compile(r"([^.\[\]]+)((?:\[\])*)")


def parse_path(path: str) -> FieldPath:
    """Parse ``a.b[].c`` into ``("a", "b", EACH, "c")``.

    Raises:
        ValueError: the path is empty or malformed. Only pydantic validators call this, and
            they turn it into a ``ValidationError`` naming the configuration field.
    """
    if not path.strip():
        raise ValueError("a field path must be a non-empty string such as 'traits.email'")
    out: list[object] = []
    for part in path.strip().split("."):
        match = _SEGMENT.fullmatch(part)
        if match is None:
            raise ValueError(
                f"malformed field path {path!r}: use dotted keys and '[]' for list items, "
                "e.g. 'properties.products[].sku'"
            )
        out.append(match.group(1))
        out.extend(EACH for _ in range(len(match.group(2)) // 2))
    return tuple(out)


def edit(message: Mapping[str, Any], path: FieldPath, fn: Edit) -> Mapping[str, Any]:
    """Apply ``fn`` to every value at ``path``; return ``message`` itself if nothing changed.

    Missing keys, and values of the wrong container type on the way, are skipped: a path
    describes where a field would be, not a promise that it is there.
    """
    result: Mapping[str, Any] = _walk(message, path, 0, fn)
    return result


def _walk(node: Any, path: FieldPath, i: int, fn: Edit) -> Any:
    segment = path[i]
    last = i + 1 == len(path)
    if segment is EACH:
        if type(node) is not list:
            return node
        new: list[Any] | None = None
        for index, item in enumerate(node):
            result = fn(item) if last else _walk(item, path, i + 1, fn)
            if result is not item:
                if new is None:
                    new = list(node)
                new[index] = result
        if new is None:
            return node
        return [item for item in new if item is not DELETE]
    if (type(node) is not dict and not isinstance(node, Mapping)) or segment not in node:
        return node
    child = node[segment]
    result = fn(child) if last else _walk(child, path, i + 1, fn)
    if result is child:
        return node
    copy = dict(node)
    if result is DELETE:
        del copy[segment]
    else:
        copy[segment] = result
    return copy


# The fast path for paths without "[]" (most of them): a loop instead of recursion and no
# edit function, which matters when pseudonymizing costs a few microseconds per message.


def lookup(message: Mapping[str, Any], path: FieldPath) -> Any:
    """The value at ``path`` (which must contain no :data:`EACH`), or :data:`MISSING`."""
    node: Any = message
    for key in path:
        if type(node) is not dict and not isinstance(node, Mapping):
            return MISSING
        node = node.get(key, MISSING)
        if node is MISSING:
            return MISSING
    return node


def replace(
    message: Mapping[str, Any], path: FieldPath, value: Any, _depth: int = 0
) -> Mapping[str, Any]:
    """A copy of ``message`` with ``value`` (or :data:`DELETE`) at an existing ``path``.

    Only the dicts on the way are copied; call it after :func:`lookup` found the path.
    """
    copy = dict(message)
    key = path[_depth]
    if _depth + 1 < len(path):
        copy[key] = replace(message[key], path, value, _depth + 1)  # type: ignore[index]
    elif value is DELETE:
        del copy[key]  # type: ignore[arg-type]
    else:
        copy[key] = value  # type: ignore[index]
    return copy
