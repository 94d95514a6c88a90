"""Who a data-subject request is about: every id and pseudonym under which their data is stored.

A privacy officer types what the person gave them: a user id, an anonymous (device) id, an
email address or a phone number. The collector may hold that person's data under

- the id itself, in ``userId``, ``anonymousId`` or ``previousId`` (alias);
- other ids linked to it: ``alias`` (``previousId`` -> ``userId``), and any event that carries
  both a ``userId`` and an ``anonymousId`` (``identify`` after login, and every later event);
  the consent ledger's ``linked_ids`` too;
- HMAC pseudonyms of the id, email or phone under the current and every old key (fields the
  collector or the SDK pseudonymized).

:func:`resolve` follows the links to a fixed point, a few streaming passes over the data. An
event belongs to the subject when one of its identity fields holds one of those ids, or when
any of its values is one of the subject's pseudonyms (their email, pseudonymized, in traits).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from journeykit.collector.dsr._scan import data_files, line_chunks, open_data
from journeykit.collector.suppression import check_subject
from journeykit.consent import ConsentError, FieldKind, LedgerError, Pseudonymizer, history
from journeykit.consent._paths import LedgerPaths

__all__ = ["IDENTITY_FIELDS", "Subject", "resolve"]

log = logging.getLogger("journeykit.collector")

IDENTITY_FIELDS = ("userId", "anonymousId", "previousId")

_MAX_PASSES = 8  # each pass may add ids linked to the last ones; real chains are 2-3 long


@dataclass(frozen=True, slots=True)
class Subject:
    """A request's subject and everything it is stored under."""

    query: str
    ids: frozenset[str]
    """Raw and pseudonymized ids matched against ``userId``, ``anonymousId``, ``previousId``."""
    pseudonyms: frozenset[str]
    """Pseudonyms of the subject's email, phone or ids, matched against any value."""

    needles: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    """Each id and pseudonym as the JSON string token it is written as (with quotes)."""

    def __post_init__(self) -> None:
        tokens = tuple(sorted({orjson.dumps(v) for v in self.ids | self.pseudonyms}))
        object.__setattr__(self, "needles", tokens)

    def chunk_may_match(self, chunk: bytes) -> bool:
        return any(needle in chunk for needle in self.needles)

    def owns(self, event: Mapping[str, Any]) -> bool:
        """Whether ``event`` is about this subject (see the module docstring)."""
        for name in IDENTITY_FIELDS:
            value = event.get(name)
            if isinstance(value, str) and value in self.ids:
                return True
        return bool(self.pseudonyms) and _holds_any(event, self.pseudonyms)

    def owned_lines(self, chunk: bytes) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """``(start, end, event)`` of each of the subject's lines in a chunk of whole lines.

        Only the lines around a needle's occurrences are looked at, so a chunk costs a few
        substring searches plus the work on its hits, not a pass over every line.
        """
        spans: set[tuple[int, int]] = set()
        for needle in self.needles:
            pos = chunk.find(needle)
            while pos >= 0:
                start = chunk.rfind(b"\n", 0, pos) + 1
                end = chunk.find(b"\n", pos)
                end = len(chunk) if end < 0 else end + 1
                spans.add((start, end))
                pos = chunk.find(needle, end)
        for start, end in sorted(spans):
            event = self.event_of(chunk[start:end])
            if event is not None:
                yield start, end, event

    def event_of(self, line: bytes) -> dict[str, Any] | None:
        """The line's event if it belongs to the subject (a rejected record's raw event too)."""
        if not self.chunk_may_match(line):
            return None
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None  # a torn line: the collector's start-up repair deals with those
        if not isinstance(record, dict):
            return None
        if self.owns(record):
            return record
        raw = record.get("event")  # rejected/: {"errors": ..., "event": <the raw event>}
        if isinstance(raw, dict) and "errors" in record and self.owns(raw):
            return record
        return None

    def widened(self, more: Iterable[str], pseudonymizer: Pseudonymizer | None) -> Subject:
        ids = set(self.ids)
        for value in more:
            ids.add(value)
            ids.update(_id_pseudonyms(value, pseudonymizer))
        return Subject(self.query, frozenset(ids), self.pseudonyms)


def _holds_any(value: object, wanted: frozenset[str]) -> bool:
    if isinstance(value, str):
        return value in wanted
    if isinstance(value, dict):
        return any(_holds_any(v, wanted) for v in value.values())
    if isinstance(value, list):
        return any(_holds_any(v, wanted) for v in value)
    return False


def _id_pseudonyms(value: str, pseudonymizer: Pseudonymizer | None) -> tuple[str, ...]:
    if pseudonymizer is None:
        return ()
    try:
        return pseudonymizer.candidates(value, FieldKind.ID)
    except ConsentError:
        return ()


def _pii_pseudonyms(query: str, pseudonymizer: Pseudonymizer | None) -> set[str]:
    if pseudonymizer is None:
        return set()
    kinds = [FieldKind.EMAIL] if "@" in query else [FieldKind.PHONE]
    out: set[str] = set()
    for kind in kinds:
        try:
            out.update(pseudonymizer.candidates(query, kind))
        except ConsentError:
            continue  # not a phone number: then it is only an id
    return out


def _linked_in_data(data_dir: Path, subject: Subject) -> set[str]:
    found: set[str] = set()
    for file in data_files(data_dir):
        with open_data(file) as handle:
            for chunk in line_chunks(handle):
                for _, _, event in subject.owned_lines(chunk):
                    inner = event.get("event") if "errors" in event else None
                    source = inner if isinstance(inner, dict) else event
                    found.update(
                        v for k in IDENTITY_FIELDS if isinstance(v := source.get(k), str) and v
                    )
    return found


def _linked_in_ledger(ledger: Path, subject: Subject) -> set[str]:
    if not ledger.is_file():
        return set()
    found: set[str] = set()
    try:
        for record in history(ledger, subject.query, resolver=lambda _: subject.ids):
            found.add(record.subject)
            found.update(record.linked_ids)
    except LedgerError as exc:
        log.warning("journeykit dsr: consent ledger not searched for linked ids: %s", exc)
    return found


def resolve(data_dir: Path, query: str, pseudonymizer: Pseudonymizer | None) -> Subject:
    """The subject of ``query`` with every id linked to it in the data and the consent ledger.

    Raises:
        InvalidSubject: ``query`` is empty, over 512 characters or has control characters.
    """
    check_subject(query)
    subject = Subject(
        query,
        frozenset({query, *_id_pseudonyms(query, pseudonymizer)}),
        frozenset(_pii_pseudonyms(query, pseudonymizer)),
    )
    ledger = LedgerPaths.under(data_dir).ledger
    for _ in range(_MAX_PASSES):
        more = _linked_in_data(data_dir, subject) | _linked_in_ledger(ledger, subject)
        if more <= subject.ids:
            return subject
        subject = subject.widened(more, pseudonymizer)
    log.warning(
        "journeykit dsr: stopped following linked ids of a subject after %d passes", _MAX_PASSES
    )
    return subject
