"""Building wire messages from SDK calls, and encoding them once, on the caller's thread."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel

from journeykit.sdk._version import LIBRARY_NAME, VERSION
from journeykit.sdk.protocol import MAX_EVENT_BYTES

__all__ = ["InvalidMessage", "MessageTooLarge", "build", "encode"]

_LIBRARY = {"name": LIBRARY_NAME, "version": VERSION}
_ORJSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


class InvalidMessage(ValueError):
    """An SDK call's arguments do not make a valid message.

    Raised at the call site in ``strict`` mode; otherwise the event is dropped with reason
    ``invalid`` and this text as the detail.
    """


class MessageTooLarge(InvalidMessage):
    """The encoded message is over the per-event limit (32 KB)."""


def _json_default(value: object) -> Any:
    if isinstance(value, Decimal):
        return float(value)
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
        return value
    if isinstance(value, int | uuid.UUID) and not isinstance(value, bool):
        return str(value)
    raise InvalidMessage(f"{name} must be a string, got {type(value).__name__}")


def _name(name: str, value: object) -> str:
    if isinstance(value, str) and value:
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


def _timestamp(value: datetime | date | None) -> str:
    if value is None:
        return datetime.now(UTC).isoformat(timespec="milliseconds")
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
    """
    uid = _id("user_id", user_id)
    aid = _id("anonymous_id", anonymous_id)
    if uid is None and aid is None:
        raise InvalidMessage("a user_id or an anonymous_id is required")
    ctx = _object("context", context) or {}
    ctx["library"] = _LIBRARY
    msg: dict[str, Any] = {
        "type": type_,
        "messageId": _id("message_id", message_id) or str(uuid.uuid4()),
        "timestamp": _timestamp(timestamp),
        "context": ctx,
    }
    if uid is not None:
        msg["userId"] = uid
    if aid is not None:
        msg["anonymousId"] = aid
    extra = _object("integrations", integrations)
    if extra:
        msg["integrations"] = extra
    msg.update(fields)
    for key in ("properties", "traits"):
        if key in msg:
            msg[key] = _object(key, msg[key]) or {}
    for key in required:
        msg[key] = _name(key, msg.get(key))
    return msg


def encode(message: Mapping[str, Any]) -> bytes:
    """Serialize a message; raise :class:`InvalidMessage` if it cannot go on the wire."""
    try:
        raw = orjson.dumps(message, default=_json_default, option=_ORJSON_OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise InvalidMessage(f"not JSON serializable: {exc}") from None
    if len(raw) > MAX_EVENT_BYTES:
        raise MessageTooLarge(
            f"message is {len(raw):,} bytes; the limit is {MAX_EVENT_BYTES:,} bytes"
        )
    return raw
