"""Canonical JSON, record hashing and the ledger's time format: the bytes an auditor recomputes.

Canonical JSON is what Python's ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` produces, encoded as UTF-8: keys sorted, no whitespace, non-ASCII
characters as raw UTF-8. Records hold only strings, integers, booleans, null, lists and objects
with ASCII keys (never floats), so every JSON library that sorts keys gives the same bytes.

A ledger line is the canonical JSON of the record *without* its ``hash`` field, with
``,"hash":"<64 hex>"`` inserted before the closing brace, then ``\\n``. ``hash`` is the SHA-256
of exactly those canonical bytes. Putting the hash last lets a verifier hash the line's own
bytes without re-serialising, and any independent tool gets the same digest by removing
``hash``, canonicalising and hashing.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "GENESIS_HASH",
    "HASH_SUFFIX_LEN",
    "canonical_json",
    "encode_line",
    "format_time",
    "parse_time",
    "split_line",
]

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first record."""

_HASH_PREFIX = b',"hash":"'
# ,"hash":"  + 64 hex digits + "}
HASH_SUFFIX_LEN = len(_HASH_PREFIX) + 64 + 2


def canonical_json(obj: Any) -> bytes:
    """The canonical JSON bytes of ``obj`` (see the module docstring)."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def encode_line(body: dict[str, Any]) -> tuple[bytes, str]:
    """The ledger line (with its newline) for a record without ``hash``, and that hash."""
    canon = canonical_json(body)
    digest = hashlib.sha256(canon).hexdigest()
    return canon[:-1] + _HASH_PREFIX + digest.encode("ascii") + b'"}\n', digest


def split_line(line: bytes) -> tuple[bytes, bytes] | None:
    """The canonical body bytes and the claimed hash of a line (without newline), or None.

    None means the line does not end with the ``hash`` field in the ledger's layout.
    """
    if len(line) <= HASH_SUFFIX_LEN or not line.endswith(b'"}'):
        return None
    cut = len(line) - HASH_SUFFIX_LEN
    if line[cut : cut + len(_HASH_PREFIX)] != _HASH_PREFIX:
        return None
    return line[:cut] + b"}", line[cut + len(_HASH_PREFIX) : -2]


def format_time(moment: datetime) -> str:
    """``moment`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; fixed width, so strings sort by time.

    A naive datetime is taken to be UTC already.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    m = moment.astimezone(UTC)
    # Not strftime: its %Y does not pad years before 1000 on every platform ("999-01-01"),
    # which would break the string order the ledger's queries rely on.
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond:06d}Z"
    )


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime; naive input is taken as UTC.

    Raises ValueError with a message fit for a person on anything else.
    """
    raw = text.strip()
    try:
        moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise ValueError(
            f"not an ISO 8601 time: {text!r} (examples: 2024-05-01, 2024-05-01T12:30:00Z, "
            "2024-05-01T14:30:00+02:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-02:00 is in year 10000 in UTC
        raise ValueError(f"{text!r} is outside years 1-9999 in UTC") from None
