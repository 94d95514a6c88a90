"""One request's events, from decoded bytes to NDJSON: validate, enrich, deduplicate, store.

Kept free of HTTP so it can be tested and benchmarked alone; ``app`` wraps it.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from journeykit.collector._onepass import admit, admit_reference
from journeykit.collector._surrogates import repair_lone_surrogates, surrogate_error
from journeykit.collector.dedup import DedupWindow
from journeykit.collector.dedup_peers import PeerJournal
from journeykit.collector.errors import HttpError
from journeykit.collector.events import MAX_EVENT_DEPTH, IsoTimes, Rejection
from journeykit.collector.privacy import PrivacyStep
from journeykit.collector.settings import CollectorSettings
from journeykit.collector.sink import NdjsonSink
from journeykit.consent import ConsentChange
from journeykit.sdk.protocol import MAX_BATCH_EVENTS, MAX_REQUEST_BYTES, Timestamp

__all__ = ["Envelope", "IngestResult", "Ingestor", "Prepared", "Rejection", "parse_envelope"]

_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)


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
    upstream_consent: bool = False  # the write key's source checked consent itself
    body: bytes | None = None  # the JSON parsed; lets screening skip checks it proves needless
    repaired: int = 0  # lone surrogate escapes read as U+FFFD (_surrogates)


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # consent gate reason -> count
    fields_removed: dict[str, int] = field(default_factory=dict)
    consent_records: int = 0
    suppressed: int = 0  # events of subjects on the suppression list, dropped
    # The events as written to disk (pseudonymized), for the decision engine; not in the
    # answer. Filled by ``Ingestor.commit`` once they are written, empty before, and always
    # empty from an ``Ingestor(..., keep_stored=False)``.
    stored: list[dict[str, Any]] = field(default_factory=list)

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
            "suppressed": self.suppressed,
            "rejected": [r.as_json() for r in self.rejected],
        }


def parse_envelope(
    body: bytes,
    single_type: str | None,
    max_events: int = MAX_BATCH_EVENTS,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> Envelope:
    """Parse a request body; ``single_type`` is set for ``/v1/<type>`` endpoints.

    Raises :class:`HttpError` 400 when the body is not JSON or not the expected shape, and 413
    for a batch of more than twice ``max_events`` messages. Problems inside individual events
    are not raised here: they become per-event rejections, those past ``max_events`` too.
    """
    repaired = 0
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        fixed = repair_lone_surrogates(body) if surrogate_error(str(exc)) else None
        if fixed is None:
            raise HttpError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
        body, repaired = fixed
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as again:  # wrong elsewhere too
            raise HttpError(400, "malformed_json", f"the body is not valid JSON: {again}") from None
    if not isinstance(doc, dict):
        raise HttpError(400, "not_an_object", "the body must be a JSON object")
    if single_type is not None:
        doc.setdefault("type", single_type)
        write_key = _text(doc.pop("writeKey", None))
        return Envelope(
            [doc], write_key=write_key, expected_type=single_type, body=body, repaired=repaired
        )
    batch = doc.get("batch")
    if not isinstance(batch, list):
        raise HttpError(400, "not_a_batch", 'the body must be an object with a "batch" array')
    if len(batch) > 2 * max_events:
        # Each message past the limit costs a rejection in the answer and under rejected/
        # (~300 bytes): a 500 KB body of 250,000 zeros would cost 70 MB and a gigabyte of memory.
        message = (
            f"the batch has {len(batch):,} messages; at most {max_events:,} are stored and a "
            f"batch of over {2 * max_events:,} is refused whole: send smaller batches"
        )
        raise HttpError(413, "too_many_events", message)
    context = doc.get("context")
    if context is not None and not isinstance(context, dict):
        raise HttpError(400, "invalid_envelope", '"context" must be an object')
    sent_at = None
    if doc.get("sentAt") is not None:
        try:
            sent_at = _TIMESTAMP.validate_python(doc["sentAt"])
        except ValidationError:
            raise HttpError(400, "invalid_envelope", '"sentAt" is not a date-time') from None
    integrations = doc.get("integrations")
    if integrations is not None and not isinstance(integrations, dict):
        raise HttpError(400, "invalid_envelope", '"integrations" must be an object')
    shared = _shared_bytes(context) + _shared_bytes(integrations)
    if shared * len(batch) > 2 * max_request_bytes:
        # Copied into every message, they would be stored once per message (and per rejected
        # one): 60 KB of them in a 7 KB gzip body of 2,500 messages wrote 150 MB.
        message = (
            f"the batch's context and integrations ({shared:,} bytes) would be copied into "
            f"each of its {len(batch):,} messages, {shared * len(batch):,} bytes in all; at "
            f"most {2 * max_request_bytes:,}: send smaller batches or put them in the messages"
        )
        raise HttpError(413, "shared_fields_too_large", message)
    if integrations:
        _merge_integrations(batch, integrations)
    return Envelope(
        batch, sent_at, context, _text(doc.get("writeKey")), body=body, repaired=repaired
    )


def _shared_bytes(value: dict[str, Any] | None) -> int:
    try:
        return len(orjson.dumps(value)) if value else 0
    except orjson.JSONEncodeError:  # parsed from up to 1,024 levels, written to 254 at most
        message = f"the batch's context or integrations nest deeper than {MAX_EVENT_DEPTH} levels"
        raise HttpError(400, "invalid_envelope", message) from None


def _merge_integrations(batch: list[Any], integrations: dict[str, Any]) -> None:
    """The batch's ``integrations`` under each message's own, as Segment applies them.

    As with ``context``, a message's own setting wins; a message whose ``integrations`` is not
    an object is left as it came, for validation to reject. Done before screening, so the
    size proof (``events.fits``) holds: a merged message is still no longer than the body.
    """
    for message in batch:
        if type(message) is dict:
            own = message.get("integrations")
            if own is None or type(own) is dict:
                message["integrations"] = {**integrations, **(own or {})}


def _second_copies(
    accepted: list[tuple[int, dict[str, Any]]],
    flags: list[bool],
    fresh: list[tuple[int, dict[str, Any]]],
    refused: list[Rejection],
) -> list[tuple[int, dict[str, Any]]]:
    """The next in-batch copy of each id whose first copy the privacy step refused."""
    refused_at = {r.index for r in refused}
    ids = {event["messageId"] for index, event in fresh if index in refused_at}
    out: list[tuple[int, dict[str, Any]]] = []
    for pair, new in zip(accepted, flags, strict=True):
        mid = pair[1]["messageId"]
        if not new and mid in ids and pair[0] not in refused_at:
            ids.discard(mid)  # the first copy after the refused one; later ones stay duplicates
            out.append(pair)
    return out


def _index(rejection: Rejection) -> int:
    return rejection.index


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _rejected_record(
    received: str, rejection: Rejection, raw: Any, privacy: PrivacyStep | None
) -> bytes:
    """The ``rejected/`` line of an event: its errors and the event, protected as if accepted.

    The privacy step's pseudonymization rules apply to the raw event too, so ``rejected/`` is
    no way around them; a field that cannot be protected is removed and listed in
    ``"removed"``. An event too deep to write back is kept down to ``MAX_EVENT_DEPTH - 1``
    levels (the record adds one), deeper values replaced by ``"…"``, and ``"clipped": true``.
    """
    record: dict[str, Any] = {
        "receivedAt": received,
        "index": rejection.index,
        "messageId": rejection.message_id,
        "errors": rejection.errors,
        "event": raw,
    }
    if privacy is not None and isinstance(raw, dict):
        # The step's own rules and keys (privacy.py has no public accessor for them yet).
        protected = privacy.protect(raw)
        record["event"] = protected.message
        if protected.removed:
            record["removed"] = [{"path": r.path, "reason": r.reason} for r in protected.removed]
    try:
        return orjson.dumps(record, default=repr)
    except orjson.JSONEncodeError:
        record["event"] = _clip(record["event"], MAX_EVENT_DEPTH - 1)
        record["clipped"] = True
        return orjson.dumps(record, default=repr)


def _clip(value: Any, levels: int) -> Any:
    """``value`` with objects and arrays below ``levels`` levels replaced by ``"…"``."""
    if isinstance(value, dict):
        return {k: _clip(v, levels - 1) for k, v in value.items()} if levels > 0 else "…"
    if isinstance(value, list):
        return [_clip(v, levels - 1) for v in value] if levels > 0 else "…"
    return value


@dataclass(slots=True)
class Prepared:
    """A request's events, checked and serialized, waiting for :meth:`Ingestor.commit`."""

    result: IngestResult
    received_at: datetime
    changes: list[ConsentChange]  # for the consent ledger
    lines: list[bytes]  # accepted events
    kept: list[dict[str, Any]]  # the same events as dicts, for ``IngestResult.stored``
    rejected_lines: list[bytes]
    fresh_ids: list[str]  # messageIds reserved in the dedup memory
    stored_ids: list[str]  # the ones that will be stored
    awaited: list[str] = field(default_factory=list)
    """Duplicates of ids another request was still writing: counted as duplicates only if
    that write succeeded."""


class Ingestor:
    """Turns envelopes into stored events and per-event answers."""

    def __init__(
        self,
        settings: CollectorSettings,
        events: NdjsonSink,
        rejected: NdjsonSink,
        dedup: DedupWindow,
        privacy: PrivacyStep | None = None,
        *,
        reference: bool = False,
        keep_stored: bool = True,
        journal: PeerJournal | None = None,
    ) -> None:
        """``reference=True`` checks every event through the separate steps and pydantic
        (``_onepass.admit_reference``): the definition the usual path is tested against.

        ``keep_stored=False`` leaves :attr:`IngestResult.stored` empty, for a caller that has
        no use for the events as dicts once they are serialized (no decision engine): a
        prepared request then holds only bytes while it waits for the disk.

        ``journal``: where the messageIds stored are also appended, one write per group
        commit, for the other workers' dedup windows (``dedup_peers``).
        """
        self._keep_stored = keep_stored
        self._journal = journal
        self._settings = settings
        self._events = events
        self._rejected = rejected
        self._dedup = dedup
        self._privacy = privacy
        self._reference = reference

    def ingest(
        self,
        envelope: Envelope,
        received_at: datetime,
        headers: Mapping[str, str] | None = None,
    ) -> IngestResult:
        """Validate and store; raises ``OSError`` if the disk refused (nothing acknowledged)."""
        return self.commit(self.prepare(envelope, received_at, headers))

    def prepare(
        self,
        envelope: Envelope,
        received_at: datetime,
        headers: Mapping[str, str] | None = None,
    ) -> Prepared:
        """The CPU part: validate, enrich, reserve messageIds, apply consent, serialize.

        Never blocks on a disk (the suppression list's change check aside, a counter read at
        most twice a second), so the app runs it on its event loop: handing it to a thread
        would only add GIL switches. Follow it with :meth:`commit`, which does block.
        """
        result = IngestResult()
        times = IsoTimes(received_at)
        e = envelope
        batch: dict[str, Any] = {
            "expected_type": e.expected_type,
            "context": e.context,
            "sent_at": e.sent_at,
            "source": e.source,
            "client_ip": e.client_ip,
        }
        if self._reference:
            accepted, rejections = admit_reference(e.events, self._settings, times, **batch)
        else:
            accepted, rejections = admit(e.events, self._settings, times, body=e.body, **batch)
        ids = all_ids = [event["messageId"] for _, event in accepted]
        flags = self._dedup.reserve(ids)
        if False in flags:
            fresh = [pair for pair, new in zip(accepted, flags, strict=True) if new]
            ids = [mid for mid, new in zip(ids, flags, strict=True) if new]
        else:
            fresh = accepted
        result.duplicates = len(accepted) - len(fresh)
        awaited: list[str] = []
        if result.duplicates:
            seen = [mid for mid, new in zip(all_ids, flags, strict=True) if not new]
            awaited = self._dedup.pending(seen)
        try:
            before = len(rejections)
            kept, changes = self._protect(
                fresh, headers or {}, received_at, result, rejections, e.upstream_consent
            )
            if result.duplicates and len(rejections) > before:
                second = _second_copies(accepted, flags, fresh, rejections[before:])
                if second:
                    # The first copy was refused for its consent payload: the next copy of
                    # that id in this batch is the event, not a duplicate of a refusal.
                    result.duplicates -= len(second)
                    more, more_changes = self._protect(
                        second, headers or {}, received_at, result, rejections, e.upstream_consent
                    )
                    kept += more
                    changes += more_changes
            lines = list(map(orjson.dumps, kept))
        except BaseException:
            self._dedup.release(ids)
            raise
        if rejections:
            rejections.sort(key=_index)
        result.rejected = rejections
        rejected_lines = [
            _rejected_record(times.received, r, e.events[r.index], self._privacy)
            for r in rejections
        ]
        stored_ids = [event["messageId"] for event in kept]
        if not self._keep_stored:
            kept = []
        return Prepared(
            result, received_at, changes, lines, kept, rejected_lines, ids, stored_ids, awaited
        )

    def commit(self, prepared: Prepared) -> IngestResult:
        """The blocking part: ledger, events, rejections to disk; then settle the messageIds.

        Raises ``OSError`` if the disk refused; then nothing counts as accepted and no
        messageId is remembered, so the client's retry is stored.
        """
        [result] = self._commit_group([prepared])
        if isinstance(result, OSError):
            raise result
        return result

    def commit_many(self, batch: list[Prepared]) -> list[IngestResult | OSError]:
        """:meth:`commit` of several requests: one write per file and one fsync for them all.

        Requests received within the same hour share a file, so they share one write of each
        kind; if the disk refuses it, each of them gets the ``OSError`` (nothing of theirs
        counts as accepted), as requests sharing one group commit do.
        """
        out: list[IngestResult | OSError] = []
        by_hour: dict[datetime, list[int]] = {}
        for index, prepared in enumerate(batch):
            hour = prepared.received_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            by_hour.setdefault(hour, []).append(index)
        settled: dict[int, IngestResult | OSError] = {}
        for indexes in by_hour.values():
            members = [batch[i] for i in indexes]
            results: list[IngestResult | OSError] | list[OSError]
            try:
                results = self._commit_group(members)
            except OSError as exc:
                results = [exc] * len(members)
            settled.update(zip(indexes, results, strict=True))
        out.extend(settled[i] for i in range(len(batch)))
        return out

    def _commit_group(self, members: list[Prepared]) -> list[IngestResult | OSError]:
        """:meth:`commit` of requests received within one hour (one file per kind)."""
        out: list[IngestResult | OSError] = [p.result for p in members]
        if any(p.awaited for p in members):
            members = self._without_lost_copies(members, out)
            if not members:
                return out
        at = members[0].received_at
        try:
            if self._privacy is not None:
                self._privacy.record([c for p in members for c in p.changes])
            # Rejections first: if their write fails, nothing is stored and the clients'
            # retries find nothing remembered. Written after the events, a failure answered
            # 503 for events already on disk (counted nowhere, their retry a "duplicate").
            # Now a failure of the events' write after it makes the retry write the
            # rejections again: a repeated line under rejected/, nothing lost.
            rejected = [line for p in members for line in p.rejected_lines]
            if rejected:
                self._rejected.write(rejected, at)
            lines = [line for p in members for line in p.lines]
            if lines:
                self._events.write(lines, at)
        except BaseException:
            for p in members:
                self._dedup.release(p.fresh_ids)
            raise
        for p in members:
            # Only stored events are remembered: a dropped or rejected one may come back
            # later, after consent was given or the client fixed it.
            if p.stored_ids != p.fresh_ids:  # the usual case: every reserved id is stored
                self._dedup.release(set(p.fresh_ids) - set(p.stored_ids))
            self._dedup.commit(p.stored_ids)
            p.result.accepted = len(p.stored_ids)
            p.result.stored = p.kept
        if self._journal is not None:
            self._journal.append([mid for p in members for mid in p.stored_ids])
        return out

    def _without_lost_copies(
        self, members: list[Prepared], out: list[IngestResult | OSError]
    ) -> list[Prepared]:
        """``members`` but those whose duplicates' first copies were not stored after all.

        A resend that arrives while the first copy is being written counts as a duplicate;
        if that write then failed, the resend, answered 200, would be the event's end. Such a
        request fails as if its own write had (503: its client sends it again), and nothing
        of it is written. Writes run one group at a time on one thread per process, so within
        a process the first copy's write has settled by now; a first copy another worker is
        still writing (Redis dedup) cannot be waited for.
        """
        kept: list[Prepared] = []
        for index, p in enumerate(members):
            lost = self._dedup.lost(p.awaited) if p.awaited else []
            if not lost:
                kept.append(p)
                continue
            self._dedup.release(p.fresh_ids)
            if self._privacy is not None:
                self._privacy.unrecorded(p.changes)
            out[index] = OSError(
                errno.EAGAIN, f"the first copy of {lost[0]!r} was not stored; send it again"
            )
        return kept  # their results, in ``out`` already, are filled in place

    def _protect(
        self,
        events: list[tuple[int, dict[str, Any]]],
        headers: Mapping[str, str],
        received_at: datetime,
        result: IngestResult,
        rejections: list[Rejection],
        upstream: bool,
    ) -> tuple[list[dict[str, Any]], list[ConsentChange]]:
        if self._privacy is None:
            return [e for _, e in events], []
        outcome = self._privacy.process(events, headers, received_at, upstream=upstream)
        by_index = dict(events)
        for index, error in outcome.invalid.items():
            rejections.append(Rejection(index, by_index[index].get("messageId"), [error]))
        # Added, not set: a batch's second copies of refused ids pass here a second time.
        for reason, n in outcome.dropped.items():
            result.dropped[reason] = result.dropped.get(reason, 0) + n
        for reason, n in outcome.fields_removed.items():
            result.fields_removed[reason] = result.fields_removed.get(reason, 0) + n
        result.consent_records += outcome.consent_records
        result.suppressed += outcome.suppressed
        return outcome.kept, outcome.changes
