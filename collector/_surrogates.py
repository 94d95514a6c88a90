"""Bodies whose strings hold a lone UTF-16 surrogate escape: read, each one made U+FFFD.

``JSON.stringify`` (ES2019) writes a string cut in the middle of an emoji, say a title
shortened with ``slice``, as ``"Sale \\ud83c"``, and Python's ``json.dumps`` writes a lone
surrogate the same way: valid JSON that names no character. orjson refuses the whole body for
it, and a 400 makes the client drop its whole batch, every other event with it. Segment's and
RudderStack's servers (Go's ``encoding/json``) read such an escape as U+FFFD; so does the
collector, and counts each one (``journeykit_lone_surrogates_replaced``).

Only bodies orjson refused come here, so the usual request pays nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["repair_lone_surrogates"]

_LONE = re.compile("[\ud800-\udfff]")  # after json.loads, every pair is one character
_REPLACEMENT = "\ufffd"


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def repair_lone_surrogates(body: bytes) -> tuple[bytes, int] | None:
    """``body`` with each lone surrogate escape read as U+FFFD, and how many there were.

    ``None`` when there are none, or when the body is not JSON for another reason (the
    caller's error about it stands).
    """
    try:
        doc = json.loads(body, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None
    replaced = 0

    def fix(text: str) -> str:
        nonlocal replaced
        fixed, n = _LONE.subn(_REPLACEMENT, text)
        replaced += n
        return fixed

    # Iteratively: a body may nest as deep as the parser allows, past Python's recursion.
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in list(node):
                value = node[key]
                if isinstance(value, str) and _LONE.search(value):
                    node[key] = fix(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
                if _LONE.search(key):
                    node[fix(key)] = node.pop(key)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                if isinstance(value, str) and _LONE.search(value):
                    node[index] = fix(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
    if isinstance(doc, str):
        doc = fix(doc)
    if not replaced:
        return None
    try:
        text = json.dumps(doc, ensure_ascii=False, allow_nan=False)
    except (ValueError, RecursionError):
        return None
    return text.encode("utf-8"), replaced
