"""The log of data-subject requests, with their status and legal deadline.

``<data-dir>/dsr/requests.ndjson`` is append-only: a request is one line when it is received
and one more each time its status changes; :func:`RequestLog.requests` folds the lines into the
latest state of each. The subject appears only as its pseudonym under the current key (the log
outlives an erasure and must not undo it), with the officer's free-text ``reference`` (a ticket
number) to find it again.

Deadlines: GDPR Art. 12(3) gives one month from receipt (extendable by two more for complex
requests, which the officer records by hand); CCPA § 1798.130 gives 45 days.
"""

from __future__ import annotations

import calendar
import fcntl
import os
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

__all__ = ["DsrRequest", "Law", "RequestKind", "RequestLog", "RequestStatus", "deadline_for"]


class Law(StrEnum):
    GDPR = "gdpr"
    CCPA = "ccpa"


class RequestKind(StrEnum):
    ACCESS = "access"
    ERASURE = "erasure"
    SUPPRESSION = "suppression"
    UNSUPPRESSION = "unsuppression"


class RequestStatus(StrEnum):
    RECEIVED = "received"
    COMPLETED = "completed"
    FAILED = "failed"


def _add_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def deadline_for(law: Law, received_at: datetime) -> datetime:
    """When the answer is due: a calendar month (GDPR) or 45 days (CCPA) after receipt."""
    if law is Law.GDPR:
        return _add_month(received_at)
    return received_at + timedelta(days=45)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class DsrRequest:
    """One request as it stands."""

    id: str
    kind: RequestKind
    subject_ref: str
    law: Law
    received_at: str
    deadline: str
    status: RequestStatus
    reference: str | None = None
    completed_at: str | None = None
    detail: dict[str, Any] | None = None

    def overdue(self, now: datetime) -> bool:
        return self.status is not RequestStatus.COMPLETED and _iso(now) > self.deadline

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "subject_ref": self.subject_ref,
            "law": self.law.value,
            "received_at": self.received_at,
            "deadline": self.deadline,
            "status": self.status.value,
            "reference": self.reference,
            "completed_at": self.completed_at,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DsrRequest:
        return cls(
            id=str(data["id"]),
            kind=RequestKind(data["kind"]),
            subject_ref=str(data["subject_ref"]),
            law=Law(data["law"]),
            received_at=str(data["received_at"]),
            deadline=str(data["deadline"]),
            status=RequestStatus(data["status"]),
            reference=data.get("reference"),
            completed_at=data.get("completed_at"),
            detail=data.get("detail"),
        )


class RequestLog:
    """The request log under a data directory; safe across processes (appends under flock)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "dsr" / "requests.ndjson"

    def open(
        self,
        kind: RequestKind,
        subject_ref: str,
        *,
        law: Law = Law.GDPR,
        reference: str | None = None,
        now: datetime | None = None,
    ) -> DsrRequest:
        """Record a new request as received; the request."""
        received = now or datetime.now(UTC)
        request = DsrRequest(
            id=f"dsr-{received:%Y%m%d}-{secrets.token_hex(4)}",
            kind=kind,
            subject_ref=subject_ref,
            law=law,
            received_at=_iso(received),
            deadline=_iso(deadline_for(law, received)),
            status=RequestStatus.RECEIVED,
            reference=reference,
        )
        self._append(request)
        return request

    def close(
        self,
        request: DsrRequest,
        status: RequestStatus,
        detail: dict[str, Any] | None = None,
        *,
        now: datetime | None = None,
    ) -> DsrRequest:
        """Record the outcome of ``request``; the request as it now stands."""
        done = replace(
            request, status=status, completed_at=_iso(now or datetime.now(UTC)), detail=detail
        )
        self._append(done)
        return done

    def requests(self) -> list[DsrRequest]:
        """Every request in its latest state, oldest first."""
        latest: dict[str, DsrRequest] = {}
        if not self.path.is_file():
            return []
        with self.path.open("rb") as handle:
            for line in handle:
                try:
                    request = DsrRequest.from_json(orjson.loads(line))
                except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
                    continue  # a torn last line from a crash; the earlier lines stand
                latest[request.id] = request
        return list(latest.values())  # in the order they were received (first line of each)

    def _append(self, request: DsrRequest) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = orjson.dumps(request.as_json()) + b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
