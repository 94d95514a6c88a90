"""Who a data-subject request is about: every id and pseudonym under which their data is stored.

A privacy officer types what the person gave them: a user id, an anonymous (device) id, an
email address or a phone number. The collector may hold that person's data under

- the id itself, in ``userId``, ``anonymousId`` or ``previousId`` (alias);
- other ids linked to it: the anonymous (device) ids its events carried (``identify`` after
  login, every later event, the ``previousId`` of an ``alias``), the user a device id led to,
  and the consent ledger's ``linked_ids``;
- HMAC pseudonyms of the id, email or phone under the current and every old key (fields the
  collector or the SDK pseudonymized).

:func:`resolve` follows the links to a fixed point, a few streaming passes over the data.

A shared device (a family's browser, a shop's kiosk) carries one anonymous id for several
people. The id is each of theirs, but it does not make them one person: from a device id the
search goes on to a user only when the device was seen with that user alone. So a request
about one user never returns, nor erases, another user's events, and a device id asked about
directly leads to no user when several signed in on it (``Subject.shared`` names such ids). The
profile store keeps the same people apart (docs/decisions.md, "Shared devices").

An event belongs to the subject when its ``userId`` is one of the subject's ids, or it has no
``userId`` and its ``anonymousId`` is one (an ``alias`` belongs to its ``userId``); or when any
of its values is one of the subject's pseudonyms (their email, pseudonymized, in traits). Only
an email or phone that identifies the event's sender (an ``identify``'s traits, or
``context.traits``) links the sender's ids to the subject: another user's "Invite Sent" with the
subject's email in ``properties`` holds the subject's data, but its sender is not the subject.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from journeykit.collector.dsr._scan import data_files, line_chunks, open_data
from journeykit.collector.sink import _escape_separators
from journeykit.collector.suppression import check_subject
from journeykit.consent import (
    ConsentError,
    FieldKind,
    LedgerError,
    Pseudonymizer,
    history,
    is_pseudonym,
)
from journeykit.consent._paths import LedgerPaths

__all__ = ["Subject", "identity", "resolve"]

log = logging.getLogger("journeykit.collector")

_MAX_PASSES = 8  # each pass may add ids linked to the last ones; real chains are 2-3 long


@dataclass(frozen=True, slots=True)
class Subject:
    """A request's subject and everything it is stored under."""

    query: str
    ids: frozenset[str]
    """Raw and pseudonymized ids matched against ``userId``, ``anonymousId``, ``previousId``."""
    pseudonyms: frozenset[str]
    """Pseudonyms of the subject's email, phone or ids, matched against any value."""
    shared: frozenset[str] = frozenset()
    """Those of ``ids`` seen with another user too (shared devices): not followed to them."""

    needles: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    """Each id and pseudonym as the JSON string token it is written as (with quotes)."""

    def __post_init__(self) -> None:
        tokens = set()
        for value in self.ids | self.pseudonyms:
            token = orjson.dumps(value)
            # As the files hold it: U+2028 and the like escaped (the sink's one-line rule).
            tokens |= {token, _escape_separators(token)}
            if value.isascii() and value.isdigit() and len(value) < 20:
                # An id sent as a number stays one in rejected/ (the event as sent).
                tokens |= {b'":' + value.encode() + end for end in (b",", b"}")}
        object.__setattr__(self, "needles", tuple(sorted(tokens)))

    def chunk_may_match(self, chunk: bytes) -> bool:
        return any(needle in chunk for needle in self.needles)

    def owns(self, event: Mapping[str, Any]) -> bool:
        """Whether ``event`` is about this subject (see the module docstring)."""
        user, device = identity(event)
        if (device if user is None else user) in self.ids:
            return True
        return bool(self.pseudonyms) and _holds_any(event, self.pseudonyms)

    def owned_lines(self, chunk: bytes) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """``(start, end, event)`` of each of the subject's lines in a chunk of whole lines.

        Only the lines around a needle's occurrences are looked at, so a chunk costs a few
        substring searches plus the work on its hits, not a pass over every line.
        """
        for start, end, record in self._records(chunk):
            if self._owns_record(record):
                yield start, end, record

    def candidates(self, chunk: bytes) -> Iterator[dict[str, Any]]:
        """Each record in a chunk of whole lines that holds a needle, the subject's or not."""
        for _, _, record in self._records(chunk):
            yield record

    def event_of(self, line: bytes) -> dict[str, Any] | None:
        """The line's event if it belongs to the subject (a rejected record's raw event too)."""
        if not self.chunk_may_match(line):
            return None
        record = _record(line)
        return record if record is not None and self._owns_record(record) else None

    def _owns_record(self, record: dict[str, Any]) -> bool:
        if self.owns(record):
            return True
        raw = record.get("event")  # rejected/: {"errors": ..., "event": <the raw event>}
        return isinstance(raw, dict) and "errors" in record and self.owns(raw)

    def _records(self, chunk: bytes) -> Iterator[tuple[int, int, dict[str, Any]]]:
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
            record = _record(chunk[start:end])
            if record is not None:
                yield start, end, record

    def widened(
        self, more: Iterable[str], pseudonymizer: Pseudonymizer | None, shared: Iterable[str]
    ) -> Subject:
        ids = set(self.ids)
        for value in more:
            ids.add(value)
            ids.update(_id_pseudonyms(value, pseudonymizer))
        return Subject(self.query, frozenset(ids), self.pseudonyms, frozenset(shared))


def identity(event: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(userId, the device id it carries)``: its ``anonymousId``, an alias's ``previousId``."""
    user = _text(event.get("userId"))
    device = _text(event.get("previousId" if event.get("type") == "alias" else "anonymousId"))
    return (user or None, device or None)


def _text(value: object) -> str | None:
    """An id as the collector stores it: a whole number as its text (rejected/ keeps numbers)."""
    if isinstance(value, str):
        return value
    return str(value) if type(value) is int else None


_SELF = ""  # among a device's users: the subject itself (user ids are never empty)


class _Links:
    """Ids linked to a subject, and the users each of its device ids was seen with.

    The data holds ids as the client sent them and the consent ledger their pseudonyms: a user
    or a device is counted once under either form (by the raw id's pseudonyms).
    """

    def __init__(self, subject: Subject, pseudonymizer: Pseudonymizer | None) -> None:
        self.subject = subject
        self.found: set[str] = set()
        self.users: dict[str, set[str]] = {}  # device -> the users seen with it (_SELF: ours)
        self._pseudonymizer = pseudonymizer
        self._raw: dict[str, str] = {}  # pseudonym -> the raw id it is of
        self._known: set[str] = set()
        for value in subject.ids:
            self._key(value)

    def _key(self, value: str) -> str:
        if value not in self._known:
            self._known.add(value)
            if not is_pseudonym(value):
                for pseudonym in _id_pseudonyms(value, self._pseudonymizer):
                    self._raw.setdefault(pseudonym, value)
        return self._raw.get(value, value)

    def add(self, user: str | None, devices: Iterable[str], own: bool) -> None:
        """A record of ``user`` carrying ``devices``; ``own``: it is the subject's."""
        ids = self.subject.ids
        if user is None:  # anonymous: links nothing
            if own:
                self.found.update(devices)
            return
        if own or user in ids:
            self.found.add(user)
            for device in devices:
                self.found.add(device)
                self.users.setdefault(self._key(device), set()).add(_SELF)
            return
        for device in devices:
            if device in ids:
                self.users.setdefault(self._key(device), set()).add(self._key(user))

    def result(self) -> tuple[set[str], set[str]]:
        """The linked ids (a device's user only if it is that device's one user); the shared."""
        found, shared = set(self.found), set()
        for device, users in self.users.items():
            if len(users) > 1:
                shared.add(device)
            elif _SELF not in users:
                found |= users
        return found, shared


def _record(line: bytes) -> dict[str, Any] | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # a torn line: the collector's start-up repair deals with those
    return record if isinstance(record, dict) else None


def _holds_any(value: object, wanted: frozenset[str]) -> bool:
    if isinstance(value, str):
        return value in wanted
    if isinstance(value, dict):
        return any(_holds_any(v, wanted) for v in value.values())
    if isinstance(value, list):
        return any(_holds_any(v, wanted) for v in value)
    return False


_IDENTITY_TRAITS = ("email", "phone")


def _identifies(event: Mapping[str, Any], wanted: frozenset[str]) -> bool:
    """Whether ``event`` says who its sender is by one of ``wanted``.

    Only an ``identify``'s traits and the ``context.traits`` every event may carry describe the
    user sending it; an email elsewhere (``properties.email`` of an "Invite Sent") is somebody
    else's, so the event holds the subject's data without making its sender the subject.
    """
    context = event.get("context")
    places = [context.get("traits") if isinstance(context, dict) else None]
    if event.get("type") == "identify":
        places.append(event.get("traits"))
    return any(
        isinstance(traits, dict) and traits.get(name) in wanted
        for traits in places
        for name in _IDENTITY_TRAITS
    )


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


def _linked_in_data(data_dir: Path, links: _Links) -> None:
    subject = links.subject
    for file in data_files(data_dir):
        with open_data(file) as handle:
            for chunk in line_chunks(handle):
                for event in subject.candidates(chunk):
                    inner = event.get("event") if "errors" in event else None
                    source = inner if isinstance(inner, dict) else event
                    user, device = identity(source)
                    own = bool(subject.pseudonyms) and _identifies(source, subject.pseudonyms)
                    links.add(user, () if device is None else (device,), own)


def _linked_in_ledger(ledger: Path, links: _Links) -> None:
    if not ledger.is_file():
        return
    subject = links.subject
    try:
        for record in history(ledger, subject.query, resolver=lambda _: subject.ids):
            # The collector records the user first and the device after (an erasure receipt:
            # the subject asked about, then its other ids).
            own = record.subject in subject.ids
            links.add(record.subject, record.linked_ids, own)
    except LedgerError as exc:
        log.warning("journeykit dsr: consent ledger not searched for linked ids: %s", exc)


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
        links = _Links(subject, pseudonymizer)
        _linked_in_data(data_dir, links)
        _linked_in_ledger(ledger, links)
        more, shared = links.result()
        if more <= subject.ids:
            return Subject(subject.query, subject.ids, subject.pseudonyms, frozenset(shared))
        subject = subject.widened(more, pseudonymizer, shared)
    log.warning(
        "journeykit dsr: stopped following linked ids of a subject after %d passes", _MAX_PASSES
    )
    return subject
