"""The wire protocol: Segment's HTTP Tracking API, as pydantic models.

Both sides use this module: the SDK to build what it sends, the collector to validate what it
receives. The models are deliberately lenient where Segment-compatible clients differ (ids may be
numbers, optional fields may be ``null``, unknown keys are kept) and strict where a wrong value
would corrupt data downstream (types of known fields, one of ``userId``/``anonymousId``).

Validate a single message from raw bytes with ``MESSAGE_ADAPTER.validate_json(raw)``; validate a
whole request body with ``BATCH_ADAPTER.validate_json(raw)``. Both adapters are built once, at
import, because building a ``TypeAdapter`` costs far more than using one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "BATCH_ADAPTER",
    "MAX_BATCH_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_REQUEST_BYTES",
    "MESSAGE_ADAPTER",
    "MESSAGE_TYPES",
    "Alias",
    "Batch",
    "Group",
    "Identify",
    "Message",
    "Page",
    "Screen",
    "Track",
    "correct_clock_skew",
    "json_schema",
]

MAX_EVENT_BYTES: Final = 32 * 1024
"""Largest serialized message accepted, in bytes (Segment's limit)."""

MAX_REQUEST_BYTES: Final = 500 * 1024
"""Largest request body accepted, in bytes, after decompression (Segment's limit)."""

MAX_BATCH_EVENTS: Final = 2_500
"""Most messages accepted in one batch; the rest are rejected one by one (Segment's limit)."""

MAX_ID_CHARS: Final = 1_024
MAX_NAME_CHARS: Final = 1_024

MESSAGE_TYPES: Final = ("track", "identify", "page", "screen", "group", "alias")


def _assume_utc(value: datetime) -> datetime:
    # Segment's libraries send offsets, but hand-written clients often do not; a naive time is
    # read as UTC rather than in the server's local zone, which would differ per deployment.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


Timestamp = Annotated[datetime, AfterValidator(_assume_utc)]
"""An ISO 8601 date-time; one without an offset is taken as UTC."""


def _id_text(value: Any) -> Any:
    """A whole number as its text; a float refused (see below); the rest left to ``str``."""
    if type(value) is int:
        return str(value)
    # A JSON parser reads an integer past 64 bits as a float: two ids that differ in the last
    # digits would become one "1.2345678901234568e+22", merging two people or two messages.
    if isinstance(value, float):
        raise PydanticCustomError(
            "id_type",
            "an id must be a string or a whole number within 64 bits, not {value}",
            {"value": value},
        )
    return value


# Ids are strings on the wire, but analytics clients in the wild send numeric ids; Segment
# accepts them and so do we, keeping the string form.
Id = Annotated[str, BeforeValidator(_id_text), Field(min_length=1, max_length=MAX_ID_CHARS)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
JsonObject = dict[str, Any]


class _Common(BaseModel):
    """Fields every message type carries."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        # The identity rule below, for JSON Schema consumers: one of the two ids, not null.
        json_schema_extra={
            "anyOf": [
                {"required": ["userId"], "properties": {"userId": {"not": {"type": "null"}}}},
                {
                    "required": ["anonymousId"],
                    "properties": {"anonymousId": {"not": {"type": "null"}}},
                },
            ]
        },
    )

    messageId: Id | None = Field(
        default=None,
        description="Client-generated unique id, used for deduplication. Filled in by the "
        "collector when absent, in which case a resend cannot be recognised.",
    )
    userId: Id | None = Field(default=None, description="Your id for a known user.")
    anonymousId: Id | None = Field(default=None, description="Device or session id.")
    timestamp: Timestamp | None = Field(
        default=None, description="When the event happened, by the client's clock."
    )
    sentAt: Timestamp | None = Field(
        default=None, description="When the client sent the message, by the same clock."
    )
    originalTimestamp: Timestamp | None = Field(
        default=None, description="Alias of timestamp used by some clients."
    )
    context: JsonObject | None = Field(
        default=None, description="Library, consent, ip, userAgent, page and similar."
    )
    integrations: JsonObject | None = Field(
        default=None, description="Destination switches, kept as sent."
    )

    @model_validator(mode="after")
    def _needs_an_identity(self) -> _Common:
        if self.userId is None and self.anonymousId is None:
            raise PydanticCustomError(
                "missing_identity", "either userId or anonymousId is required"
            )
        return self


class Track(_Common):
    """Something the user did."""

    type: Literal["track"]
    event: Name = Field(description="Event name, e.g. 'Order Completed'.")
    properties: JsonObject | None = None


class Identify(_Common):
    """Who the user is."""

    type: Literal["identify"]
    traits: JsonObject | None = None


class Page(_Common):
    """A web page view."""

    type: Literal["page"]
    name: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    category: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    properties: JsonObject | None = None


class Screen(_Common):
    """A mobile or desktop screen view."""

    type: Literal["screen"]
    name: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    category: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    properties: JsonObject | None = None


class Group(_Common):
    """The user belongs to an account, company or team."""

    type: Literal["group"]
    groupId: Id
    traits: JsonObject | None = None


class Alias(_Common):
    """Two ids are the same person: previousId becomes userId."""

    type: Literal["alias"]
    previousId: Id
    userId: Id = Field(description="The id previousId is merged into.")


Message = Annotated[
    Track | Identify | Page | Screen | Group | Alias,
    Field(discriminator="type"),
]
"""Any one message, told apart by its ``type``."""


class Batch(BaseModel):
    """The body of ``POST /v1/batch``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    batch: list[Message] = Field(max_length=MAX_BATCH_EVENTS)
    sentAt: Timestamp | None = None
    context: JsonObject | None = Field(
        default=None, description="Merged under each message's own context."
    )
    integrations: JsonObject | None = None
    writeKey: str | None = Field(
        default=None, description="Alternative to HTTP Basic auth, as Segment allows."
    )


MESSAGE_ADAPTER: Final[TypeAdapter[Track | Identify | Page | Screen | Group | Alias]] = TypeAdapter(
    Message
)
BATCH_ADAPTER: Final[TypeAdapter[Batch]] = TypeAdapter(Batch)


def correct_clock_skew(
    timestamp: datetime | None,
    sent_at: datetime | None,
    received_at: datetime,
) -> datetime:
    """Map a client-clock time onto the server's clock, Segment's way.

    ``timestamp = receivedAt - (sentAt - originalTimestamp)``: the delay the client measured on
    its own clock between the event and the send is kept, and anchored at the moment the
    server received it. A device whose clock is an hour off still records the right hour.

    Args:
        timestamp: when the event happened, by the client's clock; ``None`` means "now".
        sent_at: when the client sent it, by the same clock; without it no correction is
            possible and ``timestamp`` is returned as is.
        received_at: when the server received it, by the server's clock.

    Returns:
        The corrected, timezone-aware event time. A client claiming the event happened after it
        was sent gets ``received_at``: an event cannot come from the future.
    """
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    delay = sent_at - timestamp
    if delay < timedelta(0):
        return received_at
    return received_at - delay


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a batch request body, generated from the models."""
    schema = BATCH_ADAPTER.json_schema(ref_template="#/$defs/{model}")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://journeykit.dev/schema/protocol/v1/batch.json"
    schema["title"] = "journeykit batch (Segment HTTP Tracking API)"
    return schema
