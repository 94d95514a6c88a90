"""The collector's JSON answers as pydantic models, the one source of what ``/openapi.json`` says.

The admin status is produced through :class:`AdminStatus`; ``IngestResult.as_json`` builds the
:class:`BatchAnswer` shape as plain data (it runs on the event loop) and tests hold the two
equal, so the bytes on the wire and the documented schema cannot drift apart. Field names are
the wire names (camelCase where Segment uses it).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from journeykit.sdk._decision import Decision

__all__ = [
    "AdminStatus",
    "BatchAnswer",
    "DsrErasureAnswer",
    "DsrListedRequest",
    "DsrRequestEntry",
    "DsrRequestList",
    "ErrorAnswer",
    "ErrorDetail",
    "EventError",
    "HealthAnswer",
    "RejectedEvent",
    "SuppressionAnswer",
    "SuppressionEntry",
    "SuppressionPage",
]


class _Answer(BaseModel):
    # Serialization schemas list defaulted fields (``ok``) as required: the answer always has them.
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )


class EventError(_Answer):
    """One problem with one event; never echoes the input, which may be personal data."""

    path: str = Field(
        description="Where in the event, e.g. 'properties.price' or 'batch[3]'; empty for the "
        "event as a whole."
    )
    message: str = Field(description="For people; may change between versions.")
    type: str = Field(
        description="Stable code: a pydantic error type (missing, string_type, dict_type, ...) "
        "or one of missing_identity, union_tag_invalid, union_tag_not_found, type_mismatch, "
        "not_an_object, event_too_large, batch_too_large, invalid_consent."
    )


class RejectedEvent(_Answer):
    """An event that was not stored because it is invalid; a resend will not fix it."""

    index: int = Field(ge=0, description="Position in the request's batch (0 for /v1/<type>).")
    messageId: str | None = Field(description="The event's messageId, when it had a string one.")
    errors: list[EventError] = Field(min_length=1)


class BatchAnswer(_Answer):
    """The 200 answer of an ingestion request: what became of each event."""

    ok: Literal[True] = True
    accepted: int = Field(ge=0, description="Events stored now.")
    duplicates: int = Field(
        ge=0, description="Events whose messageId was already stored within the dedup window."
    )
    dropped: dict[str, int] = Field(
        description="Events the consent gate withheld, by reason (no_consent, "
        "denied:analytics, ...); final until consent changes, so not to be resent."
    )
    suppressed: int = Field(
        ge=0,
        description="Events of subjects on the suppression list (a data-subject request): "
        "accepted and dropped, not to be resent.",
    )
    rejected: list[RejectedEvent] = Field(description="Invalid events, in batch order.")
    decisions: dict[str, Decision] = Field(
        description="Personalization decisions of the batch's subjects (userId, else "
        "anonymousId), keyed by subject; at most `inline_decisions` of them, and empty when the "
        "collector keeps no profiles. See GET /v1/decisions/{subject}."
    )


class ErrorDetail(_Answer):
    """Why a request was refused as a whole."""

    code: str = Field(description="Stable, machine-readable code; see each status for its codes.")
    message: str = Field(description="For people; may change between versions.")


class ErrorAnswer(_Answer):
    """The body of every refused request (4xx, 5xx); nothing of the request was stored."""

    ok: Literal[False] = False
    error: ErrorDetail


class HealthAnswer(_Answer):
    """The answer of ``/healthz`` and a ready ``/readyz``."""

    ok: Literal[True] = True


class AdminStatus(_Answer):
    """``GET /admin/v1/status``: what this process serves; never any key."""

    ok: Literal[True] = True
    version: str = Field(description="The installed journeykit version, or 'unknown'.")
    pid: int = Field(description="The worker process answering.")
    uptime_seconds: float = Field(ge=0)
    data_dir: str = Field(description="Absolute path of the data directory.")
    write_keys: int = Field(ge=1, description="How many write keys are accepted.")
    sources: list[str] = Field(description="The write keys' source names, sorted, distinct.")


class SuppressionEntry(_Answer):
    """One subject on the suppression list, as stored: a pseudonym, never the raw id."""

    subject: str = Field(description="hmac-sha256:<key id>:<hex> of the subject's id.")
    keyId: str = Field(description="The pseudonymization key the entry was made under.")
    reason: str | None = Field(description="Free text given when suppressing.")
    via: Literal["api", "cli"] = Field(description="Made through the admin API or the CLI.")
    createdAt: str = Field(description="When, ISO 8601 UTC.")


class SuppressionAnswer(_Answer):
    """Whether one subject is suppressed, after a PUT, DELETE or GET."""

    ok: Literal[True] = True
    subject: str = Field(description="The subject's pseudonym under the current key.")
    suppressed: bool
    entry: SuppressionEntry | None = Field(description="The entry; null when not suppressed.")


class SuppressionPage(_Answer):
    """A page of the suppression list, in subject order."""

    ok: Literal[True] = True
    suppressions: list[SuppressionEntry]
    next: str | None = Field(
        description="Pass as ?after= for the next page; null on the last page."
    )


class DsrRequestEntry(_Answer):
    """One data-subject request as the request log holds it."""

    id: str = Field(description="dsr-YYYYMMDD-<hex>; also the X-Request-Id of an export.")
    kind: Literal["access", "erasure", "suppression", "unsuppression"]
    subject_ref: str = Field(description="The subject's pseudonym under the current key.")
    law: Literal["gdpr", "ccpa"]
    received_at: str = Field(description="ISO 8601 UTC.")
    deadline: str = Field(description="One calendar month (GDPR) or 45 days (CCPA) later.")
    status: Literal["received", "completed", "failed"]
    reference: str | None = Field(description="The officer's ticket number.")
    completed_at: str | None
    detail: dict[str, Any] | None = Field(description="What was done: counts, or the error.")


class DsrErasureAnswer(_Answer):
    """The receipt of an erasure request."""

    ok: Literal[True] = True
    request: DsrRequestEntry


class DsrListedRequest(DsrRequestEntry):
    """A logged request and whether its deadline has passed without completion."""

    overdue: bool


class DsrRequestList(_Answer):
    """The request log, oldest first."""

    ok: Literal[True] = True
    requests: list[DsrListedRequest]
