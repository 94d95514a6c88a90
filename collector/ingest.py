"""One request's events, from decoded bytes to NDJSON: validate, enrich, deduplicate, store.

Kept free of HTTP so it can be tested and benchmarked alone; ``app`` wraps it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from journeykit.collector.dedup import Deduplicator
from journeykit.collector.errors import HttpError, validation_errors
from journeykit.collector.privacy import PrivacyStep
from journeykit.collector.settings import CollectorSettings
from journeykit.collector.sink import NdjsonSink
from journeykit.sdk.protocol import MESSAGE_ADAPTER, Timestamp, correct_clock_skew

__all__ = ["Envelope", "IngestResult", "Ingestor", "Rejection", "parse_envelope"]

_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Envelope:
    """What came in one request: its events and the batch-level fields that apply to them."""

    events: list[Any]
    sent_at: datetime | None = None
    context: dict[str, Any] | None = None
    write_key: str | None = None
    expected_type: str | None = None  # set by the /v1/<type> endpoints
    source: str | None = None  # the matched write key's source; stored as "_source"
    client_ip: str | None = None  # the sender's address; context.ip when the event has none


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    message_id: str | None
    errors: list[dict[str, str]]

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "messageId": self.message_id, "errors": self.errors}


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # consent gate reason -> count
    fields_removed: dict[str, int] = field(default_factory=dict)
    consent_records: int = 0

    def as_json(self) -> dict[str, Any]:
        """The 200 answer, shaped as ``answers.BatchAnswer`` (tests hold the two equal).

        Built as plain data rather than through the model: it runs on the event loop, and
        validating a batch's worth of rejections through nested models costs milliseconds.
        """
        return {
            "ok": True,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "dropped": self.dropped,
            "rejected": [r.as_json() for r in self.rejected],
        }


def parse_envelope(body: bytes, single_type: str | None) -> Envelope:
    """Parse a request body; ``single_type`` is set for ``/v1/<type>`` endpoints.

    Raises :class:`HttpError` 400 when the body is not JSON or not the expected shape. Problems
    inside individual events are not raised here: they become per-event rejections.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise HttpError(400, "not_an_object", "the body must be a JSON object")
    if single_type is not None:
        doc.setdefault("type", single_type)
        write_key = _text(doc.pop("writeKey", None))
        return Envelope(events=[doc], write_key=write_key, expected_type=single_type)
    batch = doc.get("batch")
    if not isinstance(batch, list):
        raise HttpError(400, "not_a_batch", 'the body must be an object with a "batch" array')
    context = doc.get("context")
    if context is not None and not isinstance(context, dict):
        raise HttpError(400, "invalid_envelope", '"context" must be an object')
    sent_at = None
    if doc.get("sentAt") is not None:
        try:
            sent_at = _TIMESTAMP.validate_python(doc["sentAt"])
        except ValidationError:
            raise HttpError(400, "invalid_envelope", '"sentAt" is not a date-time') from None
    return Envelope(batch, sent_at, context, _text(doc.get("writeKey")))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


class Ingestor:
    """Turns envelopes into stored events and per-event answers."""

    def __init__(
        self,
        settings: CollectorSettings,
        events: NdjsonSink,
        rejected: NdjsonSink,
        dedup: Deduplicator,
        privacy: PrivacyStep | None = None,
    ) -> None:
        self._settings = settings
        self._events = events
        self._rejected = rejected
        self._dedup = dedup
        self._privacy = privacy

    def ingest(
        self,
        envelope: Envelope,
        received_at: datetime,
        headers: Mapping[str, str] | None = None,
    ) -> IngestResult:
        """Validate and store; raises ``OSError`` if the disk refused (nothing acknowledged)."""
        result = IngestResult()
        received = _iso(received_at)
        accepted: list[tuple[int, dict[str, Any]]] = []
        rejected_records: list[bytes] = []
        raw_events = envelope.events

        def reject(rejection: Rejection) -> None:
            result.rejected.append(rejection)
            rejected_records.append(
                orjson.dumps(
                    {
                        "receivedAt": received,
                        "index": rejection.index,
                        "messageId": rejection.message_id,
                        "errors": rejection.errors,
                        "event": raw_events[rejection.index],
                    },
                    default=repr,
                )
            )

        for index, raw in enumerate(raw_events):
            outcome = self._check(index, raw, envelope, received_at, received)
            if isinstance(outcome, Rejection):
                reject(outcome)
            else:
                accepted.append((index, outcome))

        fresh_flags = self._dedup.reserve(e["messageId"] for _, e in accepted)
        fresh = [pair for pair, new in zip(accepted, fresh_flags, strict=True) if new]
        result.duplicates = len(accepted) - len(fresh)
        fresh_ids = [e["messageId"] for _, e in fresh]
        kept: list[dict[str, Any]] = []
        try:
            kept = self._protect(fresh, headers or {}, received_at, result, reject)
            if kept:
                self._events.write([orjson.dumps(e) for e in kept], received_at)
        except OSError:
            self._dedup.release(fresh_ids)
            raise
        # Only stored events are remembered: a dropped or rejected one may come back later,
        # after consent was given or the client fixed it.
        stored_ids = [e["messageId"] for e in kept]
        self._dedup.release(set(fresh_ids) - set(stored_ids))
        self._dedup.commit(stored_ids)
        result.accepted = len(kept)
        # Written after the accepted events: if this fails the client retries, the accepted
        # events come back as duplicates, and the rejections are written again.
        if rejected_records:
            self._rejected.write(rejected_records, received_at)
        return result

    def _protect(
        self,
        events: list[tuple[int, dict[str, Any]]],
        headers: Mapping[str, str],
        received_at: datetime,
        result: IngestResult,
        reject: Callable[[Rejection], None],
    ) -> list[dict[str, Any]]:
        if self._privacy is None:
            return [e for _, e in events]
        outcome = self._privacy.process(events, headers, received_at)
        by_index = dict(events)
        for index, error in outcome.invalid.items():
            reject(Rejection(index, by_index[index].get("messageId"), [error]))
        result.dropped = dict(outcome.dropped)
        result.fields_removed = dict(outcome.fields_removed)
        result.consent_records = outcome.consent_records
        return outcome.kept

    def _check(
        self,
        index: int,
        raw: Any,
        envelope: Envelope,
        received_at: datetime,
        received: str,
    ) -> dict[str, Any] | Rejection:
        s = self._settings
        if not isinstance(raw, dict):
            return Rejection(
                index, None, [_err("", "each event must be an object", "not_an_object")]
            )
        raw.pop("writeKey", None)  # a key must never reach the event store
        mid = raw.get("messageId") if isinstance(raw.get("messageId"), str) else None
        if index >= s.max_batch_events:
            return Rejection(
                index,
                mid,
                [
                    _err(
                        "",
                        f"the batch has more than {s.max_batch_events:,} events",
                        "batch_too_large",
                    )
                ],
            )
        if envelope.expected_type is not None and raw.get("type") != envelope.expected_type:
            message = f"this endpoint takes {envelope.expected_type} messages"
            return Rejection(index, mid, [_err("type", message, "type_mismatch")])
        own_context = raw.get("context")
        if envelope.context and (own_context is None or isinstance(own_context, dict)):
            raw["context"] = {**envelope.context, **(own_context or {})}
        size = len(orjson.dumps(raw))
        if size > s.max_event_bytes:
            message = f"the event is {size:,} bytes; the limit is {s.max_event_bytes:,}"
            return Rejection(index, mid, [_err("", message, "event_too_large")])
        try:
            message_model = MESSAGE_ADAPTER.validate_python(raw)
        except ValidationError as exc:
            return Rejection(index, mid, validation_errors(exc))
        event = dict(raw)
        event["messageId"] = message_model.messageId or f"jk-{uuid.uuid4().hex}"
        event["receivedAt"] = received
        event.pop("_source", None)  # only the collector says which source an event came from
        if envelope.source is not None:
            event["_source"] = envelope.source
        if envelope.client_ip is not None:
            # As Segment does; the privacy step then truncates it, or strips it with marketing.
            context = event.get("context")
            if context is None:
                event["context"] = {"ip": envelope.client_ip}
            elif isinstance(context, dict) and "ip" not in context:
                event["context"] = {**context, "ip": envelope.client_ip}
        client_time = message_model.timestamp or message_model.originalTimestamp
        sent_at = message_model.sentAt or envelope.sent_at
        if client_time is not None:
            event["originalTimestamp"] = _iso(client_time)
        if sent_at is not None:
            event["sentAt"] = _iso(sent_at)
        event["timestamp"] = _iso(correct_clock_skew(client_time, sent_at, received_at))
        return event


def _err(path: str, message: str, kind: str) -> dict[str, str]:
    return {"path": path, "message": message, "type": kind}
