"""The collector's privacy step: record consent, enforce it, pseudonymize what is kept.

For each accepted event, in order:

0. an event of a subject on the suppression list is dropped and counted, before anything of
   it is read or recorded;
1. its consent signals (our "Consent Updated" event, Segment's ``categoryPreferences``,
   RudderStack's ``consentManagement``, the request's ``Sec-GPC`` header) update the subject's
   consent, and every change of what is in force is appended to the consent ledger;
2. the consent gate of :mod:`journeykit.consent` allows, strips or drops the event, with a
   reason code that is counted and returned to the client (events of a write key whose
   consent was checked upstream read a purpose the subject never chose as granted);
3. the configured fields are pseudonymized (already-pseudonymized values, such as those our
   SDK sends, are left alone), and ``context.ip`` is truncated.

Subjects are known by the keyed pseudonyms of their ``userId`` and ``anonymousId``; consent
given on a device before login carries over to events that carry both ids. The consent in
force is rebuilt from the ledger at start, so a restart forgets nothing.
"""

from __future__ import annotations

import errno
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import Headers

from journeykit.collector._consent_store import ConsentStore
from journeykit.collector._privacy_fast import FusedStep, Header
from journeykit.collector.suppression import SuppressionList
from journeykit.consent import (
    Action,
    ConsentChange,
    ConsentLedger,
    ConsentUpdate,
    FieldKind,
    GatePolicy,
    InvalidConsentSignal,
    InvalidFieldValue,
    LedgerError,
    Pseudonymized,
    Pseudonymizer,
    PseudonymRules,
    Purpose,
    Regime,
    SignalMapping,
    UnknownPurpose,
    decide,
    may_personalize,
    parse_gpc,
    parse_message,
    pseudonymize_message,
    truncate_ip,
)
from journeykit.consent._compiled import IdPseudonyms, Protector

__all__ = ["ConsentStore", "PrivacyOutcome", "PrivacyStep"]

log = logging.getLogger("journeykit.collector")

_ID = FieldKind.ID
_OPT_OUT = Regime.OPT_OUT


@dataclass(slots=True)
class PrivacyOutcome:
    """What the privacy step did with one request's events."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    invalid: dict[int, dict[str, str]] = field(default_factory=dict)  # index -> error
    fields_removed: Counter[str] = field(default_factory=Counter)
    consent_records: int = 0
    suppressed: int = 0
    changes: list[ConsentChange] = field(default_factory=list)  # for record()


class PrivacyStep:
    """Consent recording, the gate and pseudonymization, for the events of one request."""

    def __init__(
        self,
        *,
        ledger: ConsentLedger,
        pseudonymizer: Pseudonymizer,
        regime: Regime,
        policy: GatePolicy | None = None,
        mapping: SignalMapping | None = None,
        rules: PseudonymRules | None = None,
        suppression: SuppressionList | None = None,
    ) -> None:
        self._ledger = ledger
        self._pseudonymizer = pseudonymizer
        self._policy = policy or GatePolicy(regime=regime)
        # Write keys whose source checked consent upstream: no state reads as opt-out, and so
        # does every purpose the subject never chose; recorded denials still drop.
        self._upstream_policy = self._policy.model_copy(update={"regime": Regime.OPT_OUT})
        self.suppression = suppression
        self._mapping = mapping or SignalMapping()
        self._rules = rules or PseudonymRules()
        self.store = ConsentStore(regime)
        self._protector = Protector(self._rules, pseudonymizer)
        self._fused = FusedStep(
            ids=IdPseudonyms(pseudonymizer),
            protector=self._protector,
            states=self.store._states,
            suppression=suppression,
        )
        replayed = self.store.rebuild(ledger.path)
        if replayed:
            log.info("journeykit collector: consent of %d subjects rebuilt", len(self.store))

    def protect(self, event: dict[str, Any]) -> Pseudonymized:
        """``event`` with its configured fields pseudonymized (a copy), and what was removed."""
        return self._protector.protect(event)

    @property
    def ledger(self) -> ConsentLedger:
        """The consent ledger this step appends to (also for erasure receipts)."""
        return self._ledger

    def close(self) -> None:
        self._ledger.close()
        if self.suppression is not None:
            self.suppression.close()

    def personalization_granted(self, ids: list[str]) -> bool:
        """Whether decisions may use the data of the person known by ``ids`` (user id first).

        The same consent record the gate reads, under the collector's regime; a suppressed
        subject never is.
        """
        return self.personalization_granted_many({"": ids})[""]

    def personalization_granted_many(self, people: Mapping[str, list[str]]) -> dict[str, bool]:
        """:meth:`personalization_granted` for several people at once, keyed like ``people``.

        The ledger and the suppression list are checked for changes once for all of them
        (a ``stat`` each), not once per person: a batch asks for up to ``inline_decisions``.
        """
        self.store.follow(self._ledger.path)
        suppression = self.suppression
        if suppression is not None:
            suppression.refresh()
        pseudonymize, state, policy = (
            self._pseudonymizer.pseudonymize,
            self.store.state,
            self._policy,
        )
        out: dict[str, bool] = {}
        for key, ids in people.items():
            pseudonyms = [pseudonymize(i, _ID) for i in ids]
            if suppression is not None and suppression.is_suppressed(ids, pseudonyms):
                out[key] = False
            else:
                out[key] = may_personalize(state(pseudonyms), policy)
        return out

    def _ids(self, event: Mapping[str, Any]) -> list[str]:
        out = []
        for key in ("userId", "anonymousId"):
            value = event.get(key)
            if isinstance(value, str) and value:
                out.append(value)
        return out

    def process(
        self,
        events: list[tuple[int, dict[str, Any]]],
        headers: Mapping[str, str],
        received_at: datetime,
        *,
        upstream: bool = False,
    ) -> PrivacyOutcome:
        """Run the step over ``(index, event)`` pairs; :meth:`record` stores the changes.

        ``upstream``: the events come from a write key whose source checked consent itself.
        Gives what :meth:`process_reference` gives, faster: events without a consent signal
        of their own take a fused path (``_privacy_fast``), which merges a ``Sec-GPC`` header
        into a subject's consent only when that changes something; the others the reference
        path.
        """
        # The header speaks for every event of the request: read it once, not per event.
        gpc = _gpc(headers, received_at)
        outcome = PrivacyOutcome()
        changes: list[ConsentChange] = []
        policy = self._prepare(upstream)

        def slow(index: int, event: dict[str, Any]) -> None:
            self._one(index, event, gpc, headers, received_at, policy, upstream, outcome, changes)

        header: tuple[ConsentUpdate, Header] | None = None
        if gpc is not None:
            update = gpc

            def merge(subjects: list[str], event: dict[str, Any]) -> None:
                # What _one does for an event whose only signal is the header's.
                changed = self.store.apply(subjects, update)
                if changed:
                    changes.append(self._change(subjects, update, changed, event, headers))

            header = (update, merge)

        suppressed = self._fused.run(
            events,
            outcome.kept,
            outcome.dropped,
            outcome.fields_removed,
            policy,
            upstream,
            slow,
            header,
        )
        outcome.suppressed += suppressed  # after the call: slow() counts into it too
        outcome.changes = changes
        outcome.consent_records = len(changes)
        return outcome

    def process_reference(
        self,
        events: list[tuple[int, dict[str, Any]]],
        headers: Mapping[str, str],
        received_at: datetime,
        *,
        upstream: bool = False,
    ) -> PrivacyOutcome:
        """What :meth:`process` gives, one event at a time through the general functions.

        The definition the fused path of :meth:`process` is tested against
        (``tests/collector/test_privacy_fast.py``), and the baseline of its benchmark.
        """
        gpc = parse_gpc(headers, now=received_at)
        return self._reference(events, gpc, headers, received_at, upstream)

    def _prepare(self, upstream: bool) -> GatePolicy:
        """Catch up with other workers' consent and the suppression list; the policy to use."""
        self.store.follow(self._ledger.path)  # what other workers recorded since
        if self.suppression is not None:
            self.suppression.refresh()
        return self._upstream_policy if upstream else self._policy

    def _reference(
        self,
        events: list[tuple[int, dict[str, Any]]],
        gpc: ConsentUpdate | None,
        headers: Mapping[str, str],
        received_at: datetime,
        upstream: bool,
    ) -> PrivacyOutcome:
        outcome = PrivacyOutcome()
        changes: list[ConsentChange] = []
        policy = self._prepare(upstream)
        for index, event in events:
            self._one(index, event, gpc, headers, received_at, policy, upstream, outcome, changes)
        outcome.changes = changes
        outcome.consent_records = len(changes)
        return outcome

    def _one(
        self,
        index: int,
        event: dict[str, Any],
        gpc: ConsentUpdate | None,
        headers: Mapping[str, str],
        received_at: datetime,
        policy: GatePolicy,
        upstream: bool,
        outcome: PrivacyOutcome,
        changes: list[ConsentChange],
    ) -> None:
        """The reference path for one event, recorded into ``outcome`` and ``changes``."""
        ids = self._ids(event)
        pseudonymize = self._pseudonymizer.pseudonymize
        subjects = [pseudonymize(i, _ID) for i in ids]
        suppression = self.suppression
        if suppression is not None and suppression.is_suppressed(ids, subjects):
            outcome.suppressed += 1
            return
        try:
            updates = self._signals(event, gpc, received_at)
        except (InvalidConsentSignal, UnknownPurpose) as exc:
            # An unknown purpose in a "Consent Updated" event is a bad signal like any other:
            # the event is rejected with its path, not the whole request failed.
            outcome.invalid[index] = {
                "path": exc.field or "properties.purposes",
                "message": str(exc),
                "type": "invalid_consent",
            }
            return
        for update in updates:
            changed = self.store.apply(subjects, update)
            if changed and subjects:
                changes.append(self._change(subjects, update, changed, event, headers))
        state = self.store.state(subjects)
        if upstream and state is not None and state.regime is not _OPT_OUT:
            state = state.model_copy(update={"regime": _OPT_OUT})
        decision = decide(state, event, policy)
        if decision.action is Action.DROP or decision.message is None:
            outcome.dropped[decision.reason] += 1
            return
        result = pseudonymize_message(decision.message, self._rules, self._pseudonymizer)
        for removal in result.removed:
            outcome.fields_removed[removal.reason] += 1
        kept = result.message
        outcome.kept.append(kept if type(kept) is dict else dict(kept))

    def record(self, changes: list[ConsentChange]) -> None:
        """Append ``changes`` to the ledger durably; raises ``OSError`` if the disk refuses.

        One append per request, before its events are written: consent is evidence, so it is
        on disk before the client hears that its events were accepted. Kept apart from
        :meth:`process` so the collector can run this blocking part off its event loop.
        """
        if changes:
            try:
                self._ledger.append_many(changes)
            except (OSError, LedgerError) as exc:
                self.unrecorded(changes)
                if isinstance(exc, OSError):
                    raise
                # A torn last line (a writer of this data dir killed mid-append) refuses
                # appends until `journeykit consent repair`: the disk-like failure it is, 503.
                raise OSError(errno.EIO, f"the consent ledger refuses appends: {exc}") from exc
            except BaseException:
                self.unrecorded(changes)
                raise
            self.store.recorded()  # consent sync: wakes the Redis publisher, if any

    def unrecorded(self, changes: list[ConsentChange]) -> None:
        """Undo in memory ``changes`` that will not be recorded (their request failed).

        Otherwise the client's retry would find them made and record nothing (see
        ``ConsentStore.restore``).
        """
        subjects = {s for c in changes for s in (c.subject, *c.linked_ids)}
        if not subjects:
            return
        try:
            self.store.restore(self._ledger.path, subjects)
        except Exception as exc:  # noqa: BLE001 - the request fails anyway; say why it may stick
            log.error(
                "journeykit collector: consent changes of a failed request stay in memory "
                "though not in the ledger (%d subjects): %s",
                len(subjects),
                exc,
            )

    def _signals(
        self, event: Mapping[str, Any], gpc: ConsentUpdate | None, now: datetime
    ) -> list[ConsentUpdate]:
        found = parse_message(event, self._mapping, now=now)
        if found is None:
            return [] if gpc is None else [gpc]
        if found.timestamp > now:
            # A device clock ahead (no sentAt to correct it by): dated in the future, the
            # choice would outrank every later one, a withdrawal included, by its time.
            found = found.model_copy(update={"timestamp": now})
        return [found] if gpc is None else [found, gpc]

    @staticmethod
    def _change(
        subjects: list[str],
        update: ConsentUpdate,
        changed: Mapping[Purpose, bool],
        event: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> ConsentChange:
        found = event.get("context")
        context: Mapping[str, Any] = found if isinstance(found, dict) else {}
        ip = _address(context.get("ip"))
        agent = context.get("userAgent")
        if not isinstance(agent, str):
            agent = headers.get("user-agent")
        return ConsentChange(
            subject=subjects[0],
            linked_ids=subjects[1:],
            granted=[p for p, granted in changed.items() if granted],
            denied=[p for p, granted in changed.items() if not granted],
            source=update.source,
            method="collector",
            notice_version=update.notice_version,
            ip=ip,
            user_agent=agent,
            at=update.timestamp.astimezone(UTC),
        )


def _address(value: object) -> str | None:
    """An event's ``context.ip`` if the ledger can record it, else ``None``.

    The consent state has already changed when the change is written, so an address the ledger
    would refuse must not fail the request: the change is recorded without one.
    """
    if not isinstance(value, str):
        return None
    try:
        return truncate_ip(value)
    except InvalidFieldValue:
        return None


def _gpc(headers: Mapping[str, str], now: datetime) -> ConsentUpdate | None:
    """``parse_gpc`` of a request's headers: Starlette's are looked up, not all decoded."""
    if isinstance(headers, Headers):
        value = headers.get("sec-gpc")  # the first such header, the one parse_gpc reads
        return None if value is None else parse_gpc((("sec-gpc", value),), now=now)
    return parse_gpc(headers, now=now)
