"""Carrying out a data-subject request end to end, logged, for the CLI and the admin API alike.

An **access** request resolves the subject (ids, aliases, email/phone pseudonyms), writes the
zip of :mod:`~journeykit.collector.dsr.export` with their events, rejected events, profile,
decision and consent history, and logs the request as completed with its counts.

An **erasure** request resolves the subject, then

1. adds their ids to the suppression list, so events still in flight or sent later are
   dropped (and counted as ``suppressed``) instead of recreating what is being erased;
2. removes their events from every NDJSON file (accepted and rejected) by atomic rewrite;
3. deletes their profile (what the decision engine can attribute to them; aggregate item
   statistics such as "viewed together" counts hold no identity and stay), at once and once
   more a second after the suppression, when every worker has written what it had queued;
4. appends an erasure receipt to the consent ledger (the subject's pseudonym and the request
   id), and keeps their consent history as the legal proof of what they agreed to;
5. logs the request as completed with what was removed.

A failure at any step logs the request as failed with the error and raises; running it again
is safe (each step is idempotent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from journeykit.collector.dsr.erase import erase_events
from journeykit.collector.dsr.export import ExportManifest, export_subject
from journeykit.collector.dsr.requests import (
    DsrRequest,
    Law,
    RequestKind,
    RequestLog,
    RequestStatus,
)
from journeykit.collector.dsr.subject import Subject, resolve
from journeykit.collector.suppression import SuppressionList, check_subject
from journeykit.consent import (
    ConsentLedger,
    FieldKind,
    LedgerRecord,
    Pseudonymizer,
    RecordKind,
    history,
    is_pseudonym,
)
from journeykit.consent._paths import LedgerPaths

__all__ = ["DsrService", "ErasureReport", "ProfileAccess"]

log = logging.getLogger("journeykit.collector")

_SETTLE_SECONDS = 1.0
"""Longer than any worker's write-behind interval (0.25 s by default) plus a flush."""


class ProfileAccess(Protocol):
    """What a request needs of the decision engine."""

    def profile(self, subject: str) -> dict[str, Any] | None: ...

    def decision(self, subject: str) -> dict[str, Any] | None: ...

    def forget(self, subjects: Iterable[str]) -> int: ...


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What an erasure did."""

    request: DsrRequest
    detail: dict[str, Any]


class DsrService:
    """Access and erasure requests over one data directory."""

    def __init__(
        self,
        data_dir: Path,
        pseudonymizer: Pseudonymizer,
        suppression: SuppressionList,
        ledger: ConsentLedger,
        profiles: ProfileAccess | None = None,
        *,
        via: Literal["api", "cli"] = "cli",
    ) -> None:
        self.data_dir = data_dir
        self.log = RequestLog(data_dir)
        self._pseudonymizer = pseudonymizer
        self._suppression = suppression
        self._ledger = ledger
        self._profiles = profiles
        self._via = via

    def _ref(self, query: str) -> str:
        """The subject's pseudonym for the log; refuses an unusable subject before any record."""
        return self._pseudonymizer.pseudonymize(check_subject(query), FieldKind.ID)

    def _consent_history(self, subject: Subject) -> list[LedgerRecord]:
        ledger = LedgerPaths.under(self.data_dir).ledger
        if not ledger.is_file():
            return []
        # The subject's own records: another user's that name one of its device ids (a shared
        # device, see dsr/subject.py) are that user's.
        records = history(ledger, subject.query, resolver=lambda _: subject.ids)
        return [r for r in records if r.subject in subject.ids]

    def _raw_ids(self, subject: Subject) -> list[str]:
        # The query first: the profile and the decision are looked up under the id people use.
        return [
            subject.query,
            *sorted(i for i in subject.ids - {subject.query} if not is_pseudonym(i)),
        ]

    def export(
        self,
        query: str,
        out: Path,
        *,
        law: Law = Law.GDPR,
        reference: str | None = None,
    ) -> tuple[DsrRequest, ExportManifest]:
        """Answer an access request with a zip at ``out``; the request and the zip's manifest."""
        request = self.log.open(RequestKind.ACCESS, self._ref(query), law=law, reference=reference)
        try:
            subject = resolve(self.data_dir, query, self._pseudonymizer)
            profile = decision = None
            if self._profiles is not None:
                # Not under a shared device id: the store merged that device into the first
                # user who signed in on it, who may be somebody else.
                for candidate in self._raw_ids(subject):
                    if candidate in subject.shared:
                        continue
                    profile = self._profiles.profile(candidate)
                    if profile is not None:
                        decision = self._profiles.decision(candidate)
                        break
            manifest = export_subject(
                self.data_dir,
                subject,
                out,
                profile=profile,
                decision=decision,
                consent_records=self._consent_history(subject),
            )
        except Exception as exc:
            self.log.close(request, RequestStatus.FAILED, {"error": str(exc)})
            raise
        counts = {name: manifest.count(name) for name in manifest.files}
        return self.log.close(request, RequestStatus.COMPLETED, {"files": counts}), manifest

    def erase(
        self, query: str, *, law: Law = Law.GDPR, reference: str | None = None
    ) -> ErasureReport:
        """Carry out an erasure request (see the module docstring)."""
        ref = self._ref(query)
        request = self.log.open(RequestKind.ERASURE, ref, law=law, reference=reference)
        try:
            subject = resolve(self.data_dir, query, self._pseudonymizer)
            raw = self._raw_ids(subject)
            # Suppressed first: events arriving while the files are rewritten are dropped
            # rather than stored behind the rewrite.
            for subject_id in raw:
                self._suppression.add(subject_id, f"erased ({request.id})", via=self._via)
            suppressed_at = time.monotonic()
            removed = erase_events(self.data_dir, subject)
            profiles = 0
            if self._profiles is not None:
                # Other workers may still hold the subject's last events in their write-behind
                # queues (written within 0.25 s); forget once they are surely written, too.
                profiles = self._profiles.forget(raw)
                time.sleep(max(0.0, suppressed_at + _SETTLE_SECONDS - time.monotonic()))
                profiles += self._profiles.forget(raw)
            receipt = self._ledger.append(
                ref,
                kind=RecordKind.ERASURE_RECEIPT,
                reference=request.id,
                linked_ids=sorted({self._ref(i) for i in raw} - {ref}),
                method=f"journeykit dsr erase ({self._via})",
            )
        except Exception as exc:
            self.log.close(request, RequestStatus.FAILED, {"error": str(exc)})
            raise
        detail = {
            **removed.as_json(),
            "profiles_deleted": profiles,
            "ids_suppressed": len(raw),
            "shared_device_ids": len(subject.shared),
            "ledger_receipt_seq": receipt.seq,
        }
        log.info("journeykit dsr: erasure %s completed: %s", request.id, detail)
        done = self.log.close(request, RequestStatus.COMPLETED, detail)
        return ErasureReport(done, detail)
