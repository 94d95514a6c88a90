"""What one ledger record says, how it is checked before it is written, and the ledger's errors.

Record fields (schema version ``v`` 1), all always present::

    v, seq, kind, at, subject, linked_ids, granted, denied, withdrawal, source, method,
    notice {version, hash}, collected_via {ip, user_agent}, reference, prev_hash, hash

``granted`` and ``denied`` list only the purposes this change is about; purposes not named keep
their earlier state. A withdrawal names the purposes withdrawn in ``denied``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from journeykit.consent._canonical import format_time
from journeykit.consent._normalize import truncate_ip
from journeykit.consent.errors import ConsentError, UnknownPurpose
from journeykit.consent.purposes import ALL_PURPOSES, Purpose, parse_purpose
from journeykit.consent.state import Source

__all__ = [
    "SCHEMA_VERSION",
    "LedgerError",
    "LedgerRecord",
    "RecordKind",
    "TornLedgerError",
    "build_body",
]

SCHEMA_VERSION = 1
MAX_TEXT = 512
"""Longest free-text value (user agent, method, reference) kept; longer ones are cut."""


class LedgerError(ConsentError):
    """Anything wrong with a ledger or a record, worded for the person who has to act on it."""


class TornLedgerError(LedgerError):
    """The ledger's last line is incomplete (a crash during a write); see ``repair_ledger``."""

    def __init__(self, path: object, line: int, size: int) -> None:
        super().__init__(
            f"{path}: line {line} is incomplete ({size} bytes without a line end), most likely "
            "a crash during a write; run `journeykit consent repair` to move it aside"
        )
        self.line = line
        self.size = size


class RecordKind(StrEnum):
    """What a record documents."""

    CONSENT = "consent"
    """A consent decision: purposes granted and/or denied, or a withdrawal."""
    ERASURE_RECEIPT = "erasure_receipt"
    """Proof that a data-subject erasure request was carried out; changes no consent."""


def _purposes(values: Iterable[Purpose | str], what: str) -> list[str]:
    try:
        chosen = {parse_purpose(v) for v in values}
    except UnknownPurpose as exc:
        raise LedgerError(f"{what}: {exc}") from None
    return [p.value for p in ALL_PURPOSES if p in chosen]


def _truncated(ip: str) -> str:
    try:
        return truncate_ip(ip)
    except ConsentError:
        raise LedgerError(f"ip: not an IP address: {ip!r}") from None


def _text(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise LedgerError(f"{what} must be text, not {type(value).__name__}")
    return value[:MAX_TEXT]


def build_body(
    *,
    subject: str,
    granted: Iterable[Purpose | str] = (),
    denied: Iterable[Purpose | str] = (),
    source: Source | str,
    method: str | None = None,
    notice_version: str | None = None,
    notice_hash: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    withdrawal: bool = False,
    linked_ids: Iterable[str] = (),
    at: datetime,
    kind: RecordKind | str = RecordKind.CONSENT,
    reference: str | None = None,
) -> dict[str, Any]:
    """A checked record without ``seq``, ``prev_hash`` and ``hash`` (the ledger adds those).

    Raises LedgerError naming the field at fault.
    """
    given: object = subject  # callers outside mypy's reach pass anything
    if not isinstance(given, str) or not given.strip():
        raise LedgerError("subject must be a non-empty pseudonymous id")
    try:
        kind = RecordKind(kind)
    except ValueError:
        valid = ", ".join(k.value for k in RecordKind)
        raise LedgerError(f"unknown record kind {kind!r}; valid kinds are: {valid}") from None
    try:
        source = Source(source)
    except ValueError:
        valid = ", ".join(s.value for s in Source)
        raise LedgerError(f"unknown source {source!r}; valid sources are: {valid}") from None
    granted_list = _purposes(granted, "granted")
    denied_list = _purposes(denied, "denied")
    if overlap := set(granted_list) & set(denied_list):
        raise LedgerError(f"purposes both granted and denied: {', '.join(sorted(overlap))}")
    if Purpose.NECESSARY.value in denied_list:
        raise LedgerError("'necessary' cannot be denied or withdrawn; it needs no consent")
    if withdrawal:
        if granted_list:
            raise LedgerError("a withdrawal cannot grant purposes")
        # An unqualified withdrawal withdraws everything consent covers; spelled out in the
        # record so that reading it never depends on today's list of purposes.
        denied_list = denied_list or [p.value for p in ALL_PURPOSES if p is not Purpose.NECESSARY]
    if kind is RecordKind.CONSENT and not (granted_list or denied_list):
        raise LedgerError("a consent record must grant or deny at least one purpose")
    links = sorted({str(i) for i in linked_ids if str(i).strip() and i != subject})
    return {
        "v": SCHEMA_VERSION,
        "kind": kind.value,
        "at": format_time(at),
        "subject": subject,
        "linked_ids": links,
        "granted": granted_list,
        "denied": denied_list,
        "withdrawal": bool(withdrawal),
        "source": source.value,
        "method": _text(method, "method"),
        "notice": {
            "version": _text(notice_version, "notice_version"),
            "hash": _text(notice_hash, "notice_hash"),
        },
        "collected_via": {
            "ip": None if ip is None else _truncated(ip),
            "user_agent": _text(user_agent, "user_agent"),
        },
        "reference": _text(reference, "reference"),
    }


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """One record as read back from the ledger, with the line it was on."""

    line: int
    seq: int
    kind: str
    at: str
    subject: str
    linked_ids: tuple[str, ...]
    granted: tuple[str, ...]
    denied: tuple[str, ...]
    withdrawal: bool
    source: str
    method: str | None
    notice_version: str | None
    notice_hash: str | None
    ip: str | None
    user_agent: str | None
    reference: str | None
    prev_hash: str
    hash: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any], line: int) -> LedgerRecord:
        """The record of a parsed ledger line; LedgerError when a field is missing or mistyped."""
        try:
            notice = data.get("notice") or {}
            via = data.get("collected_via") or {}
            return cls(
                line=line,
                seq=int(data["seq"]),
                kind=str(data["kind"]),
                at=str(data["at"]),
                subject=str(data["subject"]),
                linked_ids=tuple(data.get("linked_ids") or ()),
                granted=tuple(data["granted"]),
                denied=tuple(data["denied"]),
                withdrawal=bool(data.get("withdrawal", False)),
                source=str(data["source"]),
                method=data.get("method"),
                notice_version=notice.get("version"),
                notice_hash=notice.get("hash"),
                ip=via.get("ip"),
                user_agent=via.get("user_agent"),
                reference=data.get("reference"),
                prev_hash=str(data["prev_hash"]),
                hash=str(data["hash"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LedgerError(f"line {line}: malformed record ({exc!r})") from None

    def mentions(self, ids: frozenset[str] | set[str]) -> bool:
        """Whether the record is about any of ``ids`` (as subject or linked id)."""
        return self.subject in ids or any(i in ids for i in self.linked_ids)
