"""Bodies whose strings hold a lone UTF-16 surrogate escape: each one read as U+FFFD.

``JSON.stringify`` (ES2019) writes a string cut in the middle of an emoji, say a title
shortened with ``slice``, as ``"Sale \\ud83c"``, and Python's ``json.dumps`` writes a lone
surrogate the same way: valid JSON that names no character. orjson refuses the whole body for
it, and a 400 makes the client drop its whole batch, every other event with it. Segment's and
RudderStack's servers (Go's ``encoding/json``) read such an escape as U+FFFD; so does the
collector, and counts each one (``journeykit_lone_surrogates_replaced``).

The escapes are replaced in the body's bytes, and orjson parses the result once: whatever else
orjson refuses (bytes that are not UTF-8, ``NaN``, numbers out of range, nesting) is still
refused. Only bodies orjson refused for a surrogate come here, and the replacement is one
regular-expression pass, so a crafted body costs no more than parsing it.
"""

from __future__ import annotations

import re

__all__ = ["repair_lone_surrogates", "surrogate_error"]

# A run of backslashes, then "u" and a surrogate's four hex digits; a high one may be followed
# by its low one. The escape is real only after an odd run (an even one is escaped backslashes
# followed by a plain "u"). A match starts only where a run starts, and takes the run whole
# (possessive): tried from every backslash of a long run, a body of escaped backslashes took
# time quadratic in its length (500 KB, 590 bytes gzipped: about 25 minutes of a worker).
_ESCAPE = re.compile(
    rb"(?<!\\)(\\++)u([dD][89abAB][0-9a-fA-F]{2})(\\u[dD][c-fC-F][0-9a-fA-F]{2})?"
    rb"|(?<!\\)(\\++)u([dD][c-fC-F][0-9a-fA-F]{2})"
)
_REPLACEMENT = b"\\ufffd"


def surrogate_error(message: str) -> bool:
    """Whether orjson's ``JSONDecodeError`` message is about a surrogate escape."""
    return "surrogate" in message


def repair_lone_surrogates(body: bytes) -> tuple[bytes, int] | None:
    """``body`` with each lone surrogate escape made ``\\ufffd``, and how many; ``None`` if none."""
    replaced = 0

    def fix(match: re.Match[bytes]) -> bytes:
        nonlocal replaced
        high = match.group(1) is not None
        run = match.group(1) if high else match.group(4)
        low = match.group(3) if high else None
        if len(run) % 2 == 0:  # escaped backslashes, then a plain "u" and four characters
            if low is None:
                return match.group(0)
            replaced += 1  # the low escape after them stands alone
            return run + b"u" + match.group(2) + _REPLACEMENT
        if low is not None:
            return match.group(0)  # a whole pair: one character
        replaced += 1
        return run[:-1] + _REPLACEMENT

    fixed = _ESCAPE.sub(fix, body)
    return (fixed, replaced) if replaced else None
