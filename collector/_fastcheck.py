"""A hand-written check of the plainly valid event, so that most events skip pydantic.

Validating an event through the protocol's pydantic models costs several microseconds, the
largest single cost of ingestion. Nearly every event is an SDK's plain output: string ids, an
RFC 3339 time, objects where objects belong. :func:`check` recognises exactly that case and
derives what ``events.enrich`` reads from a model; for anything else it answers ``None`` ("not
sure") and pydantic decides, as before, with its own error messages.

The rule that keeps this safe: an event :func:`check` accepts is one the models accept, and
every derived value equals the model's. Whatever it does not fully understand is left to
pydantic: numeric or boolean ids, unknown types, missing fields, wrong types, lengths out of
range. Times are read by the protocol's own ``Timestamp`` type, alone: a hand-written date
parser (a strict pattern, then ``datetime.fromisoformat``) measured no faster and could
disagree.
``tests/collector/test_fastcheck.py`` holds the two equal on generated events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from journeykit.sdk.protocol import MAX_ID_CHARS, MAX_NAME_CHARS, Timestamp

__all__ = ["Checked", "check"]

# The schema validator itself: the adapter's Python wrapper costs as much again as the parse.
_read_time: Final = TypeAdapter(Timestamp).validator.validate_python


class Checked:
    """What ``enrich`` reads from a valid event's model, for an event :func:`check` accepted.

    Ids are the event's own strings (the model keeps them as they are); an id that is not a
    field of the event's type is an extra, which the model keeps as sent, and so is it here.
    Ids are read from the event on demand: ``enrich`` needs only ``messageId`` of them.
    """

    __slots__ = ("_raw", "originalTimestamp", "sentAt", "timestamp")

    def __init__(
        self,
        raw: dict[str, Any],
        timestamp: datetime | None,
        sent_at: datetime | None,
        original: datetime | None,
    ) -> None:
        self._raw = raw
        self.timestamp = timestamp
        self.sentAt = sent_at
        self.originalTimestamp = original

    @property
    def messageId(self) -> str | None:
        return self._raw.get("messageId")

    @property
    def userId(self) -> str | None:
        return self._raw.get("userId")

    @property
    def anonymousId(self) -> str | None:
        return self._raw.get("anonymousId")

    @property
    def groupId(self) -> Any:
        return self._raw.get("groupId")

    @property
    def previousId(self) -> Any:
        return self._raw.get("previousId")


def _text(value: Any, shortest: int, longest: int) -> bool:
    return type(value) is str and shortest <= len(value) <= longest


def _declared(kind: Any, raw: dict[str, Any]) -> tuple[bool, Any]:
    """Whether the fields a type other than track declares beyond the common ones are plainly
    valid, and its object field (``properties`` or ``traits``); any other key is an extra."""
    if kind == "identify":
        return True, raw.get("traits")
    if kind == "page" or kind == "screen":
        name = raw.get("name")
        category = raw.get("category")
        return (
            (name is None or _text(name, 0, MAX_NAME_CHARS))
            and (category is None or _text(category, 0, MAX_NAME_CHARS))
        ), raw.get("properties")
    if kind == "group":
        return _text(raw.get("groupId"), 1, MAX_ID_CHARS), raw.get("traits")
    if kind == "alias":
        previous = raw.get("previousId")
        return _text(previous, 1, MAX_ID_CHARS) and _text(raw.get("userId"), 1, MAX_ID_CHARS), None
    return False, None


def _time(value: Any, dates: dict[str, datetime]) -> datetime:
    """The protocol's own reading of a time, so it cannot differ; ``ValidationError`` if bad."""
    found = dates.get(value) if type(value) is str else None
    if found is None:
        found = _read_time(value)
        if type(value) is str:
            dates[value] = found
    return found


def check(raw: dict[str, Any], dates: dict[str, datetime]) -> Checked | None:
    """``raw``'s derived fields if it is plainly valid; ``None`` if pydantic must decide.

    ``raw`` is a screened event (``events.screen``): orjson serialized it or parsed it from
    the body, so its keys are strings at every level and its strings valid UTF-8, as pydantic
    requires; neither is checked again here. ``dates`` caches parsed times by their text;
    share one per batch, where events often carry the same ``sentAt``. Written inline, with
    few calls: it runs for every event.
    """
    get = raw.get
    kind = get("type")
    if kind == "track":  # most events: checked here, without a call
        name = get("event")
        if not (type(name) is str and 0 < len(name) <= MAX_NAME_CHARS):
            return None
        body = get("properties")
    else:
        plain, body = _declared(kind, raw)
        if not plain:
            return None
    user = get("userId")
    anonymous = get("anonymousId")
    message_id = get("messageId")
    if user is None:
        if anonymous is None:
            return None  # pydantic's error says what is missing
    elif not (type(user) is str and 0 < len(user) <= MAX_ID_CHARS):
        return None
    if not (
        (anonymous is None or (type(anonymous) is str and 0 < len(anonymous) <= MAX_ID_CHARS))
        and (
            message_id is None or (type(message_id) is str and 0 < len(message_id) <= MAX_ID_CHARS)
        )
    ):
        return None
    context = get("context")
    integrations = get("integrations")
    if not (
        (context is None or type(context) is dict)
        and (integrations is None or type(integrations) is dict)
        and (body is None or type(body) is dict)
    ):
        return None
    timestamp = get("timestamp")
    sent_at = get("sentAt")
    original = get("originalTimestamp")
    if timestamp is None and sent_at is None and original is None:
        return Checked(raw, None, None, None)
    try:
        return Checked(
            raw,
            None if timestamp is None else _time(timestamp, dates),
            None if sent_at is None else _time(sent_at, dates),
            None if original is None else _time(original, dates),
        )
    except ValidationError:
        return None
