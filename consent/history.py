"""A subject's consent over time: every record about them, and the consent in force at a moment.

A subject is found by its pseudonyms: the query id itself plus whatever an injected resolver
returns for it (for example the HMAC pseudonyms of a raw email under the current and old keys),
matched against each record's ``subject`` and ``linked_ids``. Erasure receipts appear in the
history but change no consent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from journeykit.consent._canonical import format_time
from journeykit.consent._ledgerfile import iter_record_dicts
from journeykit.consent.purposes import ALL_PURPOSES, Purpose
from journeykit.consent.records import LedgerRecord, RecordKind

__all__ = [
    "PurposeStatus",
    "Resolver",
    "SubjectState",
    "history",
    "iter_records",
    "state_at",
    "subject_ids",
]

Resolver = Callable[[str], Iterable[str]]
"""Maps what a person typed (a raw id, an email) to the pseudonyms it may be stored under."""


def subject_ids(subject: str, resolver: Resolver | None = None) -> frozenset[str]:
    """``subject`` and every pseudonym ``resolver`` gives for it."""
    ids = {subject}
    if resolver is not None:
        ids.update(resolver(subject))
    return frozenset(ids)


def iter_records(ledger: Path | str) -> Iterator[LedgerRecord]:
    """Every record of the ledger, in order; streams the file (LedgerError if torn)."""
    return (LedgerRecord.from_json(data, line) for line, data in iter_record_dicts(ledger))


def history(
    ledger: Path | str, subject: str, *, resolver: Resolver | None = None
) -> Iterator[LedgerRecord]:
    """Every record about ``subject``, in ledger order; streams the file.

    A missing or torn ledger raises LedgerError at the call.
    """
    ids = subject_ids(subject, resolver)
    return (
        LedgerRecord.from_json(data, line)
        for line, data in iter_record_dicts(ledger)
        if data.get("subject") in ids or not ids.isdisjoint(data.get("linked_ids") or ())
    )


@dataclass(frozen=True, slots=True)
class PurposeStatus:
    """One purpose's state at a moment, and the record that set it (None when unset)."""

    purpose: Purpose
    status: Literal["granted", "denied", "unset"]
    record: LedgerRecord | None


@dataclass(frozen=True, slots=True)
class SubjectState:
    """The consent of one subject at one moment, per purpose."""

    subject: str
    at: str
    ids: frozenset[str]
    purposes: tuple[PurposeStatus, ...]
    records_seen: int

    def status(self, purpose: Purpose | str) -> str:
        """``granted``, ``denied`` or ``unset`` for ``purpose``."""
        return next(p.status for p in self.purposes if p.purpose == purpose)


def state_at(
    ledger: Path | str,
    subject: str,
    at: datetime,
    *,
    resolver: Resolver | None = None,
) -> SubjectState:
    """The consent of ``subject`` in force at ``at``: the latest decision per purpose up to it.

    "Latest" is by the time the choice was made (``at`` of the record), so imported history
    with earlier times is placed where it belongs; at one time a denial beats a grant (as the
    collector's merge decides it), and equal choices follow ledger order.
    """
    moment = format_time(at)
    ids = subject_ids(subject, resolver)
    latest: dict[str, tuple[str, bool, int, LedgerRecord]] = {}
    seen = 0
    for record in history(ledger, subject, resolver=lambda _: ids):
        if record.at > moment:  # fixed-width UTC strings sort by time
            continue
        seen += 1
        if record.kind != RecordKind.CONSENT:
            continue
        for purpose in (*record.granted, *record.denied):
            key = (record.at, purpose in record.denied, record.seq)
            if purpose not in latest or latest[purpose][:3] <= key:
                latest[purpose] = (*key, record)
    statuses = []
    for purpose in ALL_PURPOSES:
        if purpose.value in latest:
            record = latest[purpose.value][3]
            status: Literal["granted", "denied"] = (
                "granted" if purpose.value in record.granted else "denied"
            )
            statuses.append(PurposeStatus(purpose, status, record))
        else:
            statuses.append(PurposeStatus(purpose, "unset", None))
    return SubjectState(subject, moment, ids, tuple(statuses), seen)
