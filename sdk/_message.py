"""Building wire messages from SDK calls, and encoding them once, on the caller's thread."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel

from journeykit.sdk import _ids
from journeykit.sdk._version import LIBRARY_NAME, VERSION
from journeykit.sdk.protocol import MAX_EVENT_BYTES, MAX_ID_CHARS, MAX_NAME_CHARS

__all__ = [
    "JSON_OPTIONS",
    "LIBRARY",
    "InvalidMessage",
    "MessageTooLarge",
    "build",
    "encode",
    "json_default",
    "now",
    "subject_id",
]

LIBRARY = {"name": LIBRARY_NAME, "version": VERSION}
"""``context.library`` of every message (shared: nothing mutates a message)."""
JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
"""orjson options of :func:`encode` (with :func:`json_default`)."""


class InvalidMessage(ValueError):
    """An SDK call's arguments do not make a valid message.

    Raised at the call site in ``strict`` mode; otherwise the event is dropped with reason
    ``invalid`` and this text as the detail.
    """


class MessageTooLarge(InvalidMessage):
    """The encoded message is over the per-event limit (32 KB)."""


def json_default(value: object) -> Any:
    """orjson's ``default``: what else a message may hold (decimals, sets, tuples, models)."""
    if isinstance(value, Decimal):
        number = float(value)
        if not math.isfinite(number):  # orjson would write null: the value would be lost
            raise TypeError(f"Decimal {value} is not a finite number")
        return number
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _id(name: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value:
            raise InvalidMessage(f"{name} must not be empty")
        if len(value) > MAX_ID_CHARS:  # the collector would reject it, later and unseen here
            raise InvalidMessage(f"{name} is {len(value):,} characters; at most {MAX_ID_CHARS:,}")
        return value
    if isinstance(value, int | uuid.UUID) and not isinstance(value, bool):
        return str(value)
    raise InvalidMessage(f"{name} must be a string, got {type(value).__name__}")


def subject_id(user_id: object) -> str:
    """A user id as it goes on the wire (a non-empty string; integers and UUIDs as text).

    Raises:
        InvalidMessage: anything else, ``None`` included.
    """
    subject = _id("user_id", user_id)
    if subject is None:
        raise InvalidMessage("a user_id is required")
    return subject


def _name(name: str, value: object) -> str:
    if isinstance(value, str) and value:
        if len(value) > MAX_NAME_CHARS:
            raise InvalidMessage(f"{name} is {len(value):,} characters; at most {MAX_NAME_CHARS:,}")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidMessage(f"{name} must be a non-empty string, got {value!r}")


def _object(name: str, value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    raise InvalidMessage(f"{name} must be a mapping, got {type(value).__name__}")


# The last (millisecond, text) and (second, text) formatted: calls in the same millisecond
# share the whole text, calls in the same second the formatting of its date and time.
_milli: tuple[int, str] = (-1, "")
_second: tuple[int, str] = (-1, "")


def now() -> str:
    """``datetime.now(UTC).isoformat(timespec="milliseconds")``, at a fraction of the cost."""
    global _milli, _second
    ms = time.time_ns() // 1_000_000
    cached = _milli  # one read: another thread may replace it meanwhile, never tear it
    if cached[0] == ms:
        return cached[1]
    second, milli = divmod(ms, 1000)
    date = _second
    if date[0] != second:
        date = _second = (second, datetime.fromtimestamp(second, UTC).isoformat()[:19])
    text = f"{date[1]}.{milli:03d}+00:00"
    _milli = (ms, text)
    return text


def _timestamp(value: datetime | date | None) -> str:
    if value is None:
        return now()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat(timespec="milliseconds")
    raise InvalidMessage("timestamp must be a datetime")


def build(
    type_: str,
    *,
    user_id: object,
    anonymous_id: object,
    context: Mapping[str, Any] | None,
    timestamp: datetime | None,
    message_id: object,
    integrations: Mapping[str, Any] | None,
    fields: Mapping[str, Any],
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Assemble one message in wire form; raise :class:`InvalidMessage` on bad arguments.

    ``required`` names entries of ``fields`` that must be non-empty strings (or integers,
    kept as their string form), such as a track's ``event`` or an alias's ``previousId``.
    Mappings given as ``properties`` or ``traits`` are used as they are when they are plain
    dicts (nothing downstream mutates a message: the gate and pseudonymization copy on write,
    and the message is encoded before the call returns) and copied into one otherwise.
    """
    # Plain non-empty strings, the common case, skip the checks' function calls.
    fits = type(user_id) is str and 0 < len(user_id) <= MAX_ID_CHARS
    uid = user_id if fits else _id("user_id", user_id)
    aid = anonymous_id if anonymous_id is None else _id("anonymous_id", anonymous_id)
    if uid is None and aid is None:
        raise InvalidMessage("a user_id or an anonymous_id is required")
    if context is None:
        ctx = {"library": LIBRARY}
    else:
        ctx = _object("context", context) or {}
        ctx["library"] = LIBRARY
    if message_id is None:
        mid = _ids.message_id()
    else:
        mid = _id("message_id", message_id) or _ids.message_id()
    msg: dict[str, Any] = {
        "type": type_,
        "messageId": mid,
        "timestamp": now() if timestamp is None else _timestamp(timestamp),
        "context": ctx,
    }
    if uid is not None:
        msg["userId"] = uid
    if aid is not None:
        msg["anonymousId"] = aid
    if integrations is not None:
        extra = _object("integrations", integrations)
        if extra:
            msg["integrations"] = extra
    for key, value in fields.items():
        if (key == "properties" or key == "traits") and type(value) is not dict:
            value = _object(key, value) or {}
        msg[key] = value
    for key in required:
        value = msg.get(key)
        if type(value) is not str or not 0 < len(value) <= MAX_NAME_CHARS:
            msg[key] = _name(key, value)
    return msg


def encode(message: Mapping[str, Any]) -> bytes:
    """Serialize a message; raise :class:`InvalidMessage` if it cannot go on the wire."""
    try:
        raw = orjson.dumps(message, default=json_default, option=JSON_OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise InvalidMessage(f"not JSON serializable: {exc}") from None
    if len(raw) > MAX_EVENT_BYTES:
        raise MessageTooLarge(
            f"message is {len(raw):,} bytes; the limit is {MAX_EVENT_BYTES:,} bytes"
        )
    if b"null" in raw and _has_non_finite(message):
        raise InvalidMessage("a number is NaN or infinite, which JSON cannot hold")
    # orjson's bytes keep its whole write buffer (4 KB at least); a queued event must not.
    return bytes(memoryview(raw))


def _has_non_finite(value: object) -> bool:
    """Whether ``value`` holds a float NaN or infinity (orjson writes them as ``null``).

    Looked for only in a message whose JSON has a ``null``: one substring search otherwise.
    """
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_has_non_finite(v) for v in value)
    if isinstance(value, BaseModel):
        return _has_non_finite(value.model_dump())
    return False
