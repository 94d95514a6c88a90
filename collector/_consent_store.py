"""The consent in force per subject, in memory, rebuilt from (and following) the ledger."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path

import orjson

from journeykit.consent import (
    ConsentState,
    ConsentUpdate,
    LedgerRecord,
    Purpose,
    Regime,
    Source,
)

__all__ = ["ConsentStore"]


class ConsentStore:
    """The consent in force per pseudonymous subject, in memory, rebuilt from the ledger.

    Memory grows with the number of subjects that ever sent a consent signal (about 1 KB
    each); the profile store of a later release takes this over. With Redis, other hosts'
    consent comes in through :mod:`journeykit.collector._consent_sync`.
    """

    def __init__(self, regime: Regime) -> None:
        self._regime = regime
        self._states: dict[str, ConsentState] = {}
        self._lock = threading.Lock()
        self._follow_lock = threading.Lock()
        self._offset = 0  # how far into the ledger file this store has read
        #: Bumped whenever the states are cleared: what other hosts sent must then be read again.
        self.generation = 0
        #: Called after this process appended consent records to the ledger (see recorded()).
        self.on_recorded: Callable[[], None] | None = None

    def recorded(self) -> None:
        """Tell the listener (the Redis publisher, if any) that the ledger grew."""
        hook = self.on_recorded
        if hook is not None:
            hook()

    def __len__(self) -> int:
        return len(self._states)

    def state(self, subjects: Iterable[str]) -> ConsentState | None:
        """The state of the first of ``subjects`` that has one (user first, then device)."""
        for subject in subjects:
            found = self._states.get(subject)
            if found is not None:
                return found
        return None

    def apply(self, subjects: list[str], update: ConsentUpdate) -> dict[Purpose, bool]:
        """Merge what of ``update`` changes a choice's effect; return those choices.

        The caller records exactly these choices in the ledger, so exactly these are kept:
        a purpose ``update`` only re-asserts (a browser's ``Sec-GPC: 1`` on every request)
        keeps the time of the choice in force instead of moving it to this signal's. So the
        state in memory is the one a replay of the ledger gives, in another worker following
        it or after a restart; had the time moved here only, a banner choice dated between
        the two signals would be ignored by this process and applied by the others.
        """
        with self._lock:
            changed = self._changes(subjects, update)
            # Nothing changed, nothing recorded, nothing kept: not even an empty state for a
            # subject seen for the first time, which would hide its device's consent here only.
            if changed and len(changed) == len(update.purposes):
                self._merge(subjects, update)
            elif changed:
                kept = {p: g for p, g in update.purposes.items() if p in changed}
                self._merge(subjects, update.model_copy(update={"purposes": kept}))
        return changed

    def _base(self, subjects: list[str], subject: str) -> ConsentState | None:
        """``subject``'s state, or, for a first signal of its own, its device's.

        A user's first signal (``Sec-GPC`` denying marketing on a signed-in page) starts from
        the consent the device already holds, as reads fall back on it: a state of that one
        choice alone would hide the device's grants and, under opt-in, deny the rest.
        """
        own = self._states.get(subject)
        if own is not None:
            return own
        # From the ids after it only (a user's devices), never the other way: a device
        # that took a signed-in user's grants would apply them to the next person on it.
        later = subjects[subjects.index(subject) + 1 :]
        return next((self._states[s] for s in later if s in self._states), None)

    def _changes(self, subjects: list[str], update: ConsentUpdate) -> dict[Purpose, bool]:
        changed: dict[Purpose, bool] = {}
        for subject in subjects:
            before = self._states.get(subject)
            base = self._base(subjects, subject)  # ``before``, or its device's for a first
            after = (
                ConsentState.from_update(update, self._regime)
                if base is None
                else base.merge(update)
            )
            for purpose, granted in update.purposes.items():
                was = before.choice(purpose) if before is not None else None
                if after.choice(purpose) != was and after.is_granted(purpose) == granted:
                    changed[purpose] = granted
        return changed

    def _merge(self, subjects: list[str], update: ConsentUpdate) -> None:
        bases = {subject: self._base(subjects, subject) for subject in subjects}
        for subject, before in bases.items():
            self._states[subject] = (
                ConsentState.from_update(update, self._regime)
                if before is None
                else before.merge(update)
            )

    def rebuild(self, ledger: Path) -> int:
        """Replay the ledger's consent records; returns how many were read."""
        return self.follow(ledger)

    def follow(self, ledger: Path) -> int:
        """Apply the consent records appended since the last call, by any process; how many.

        Workers of one data dir share the ledger but each holds its state in memory: a consent
        recorded through one worker must govern the next event even when another worker
        receives it. One ``stat`` per request finds out whether anything was appended.
        """
        try:
            size = ledger.stat().st_size
        except FileNotFoundError:
            return 0
        with self._follow_lock:
            if size == self._offset:
                return 0
            if size < self._offset:  # repaired or replaced: start again from its beginning
                with self._lock:
                    self._states.clear()
                    self.generation += 1
                self._offset = 0
            with ledger.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read(size - self._offset)
            end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
            self._offset += end
            count = 0
            for record in _consent_records(data[:end]):
                self._apply(record)
                count += 1
            return count

    def restore(self, ledger: Path, subjects: Iterable[str]) -> None:
        """Put back what the ledger says of ``subjects``, whose last changes it did not take.

        A request's consent changes are merged here while it is checked, and appended to the
        ledger when it is written. When that append fails the request fails (503), and its
        retry, finding the changes already made, would record nothing: the choice would hold
        in this process alone and vanish at its restart. So the subjects' states are read back
        from the ledger (a full read, on the writer thread, after a disk failure only); other
        hosts' consent, which comes through Redis, is read again too (``generation``).
        """
        wanted = set(subjects)
        rebuilt = ConsentStore(self._regime)
        try:
            data = ledger.read_bytes()
        except FileNotFoundError:
            data = b""
        for record in _consent_records(data[: data.rfind(b"\n") + 1]):
            if record.subject in wanted or not wanted.isdisjoint(record.linked_ids):
                rebuilt._apply(record)
        with self._lock:
            for subject in wanted:
                state = rebuilt._states.get(subject)
                if state is None:
                    self._states.pop(subject, None)
                else:
                    self._states[subject] = state
            self.generation += 1

    def _apply(self, record: LedgerRecord) -> None:
        self.apply_record(
            record.subject,
            record.linked_ids,
            record.granted,
            record.denied,
            record.source,
            record.at,
            record.notice_version,
        )

    def apply_record(
        self,
        subject: str,
        linked_ids: Sequence[str],
        granted: Iterable[str],
        denied: Iterable[str],
        source: str,
        at: str,
        notice_version: str | None,
    ) -> None:
        """Apply one consent record (of the ledger, or of another host through Redis).

        Raises ``ValueError`` for an unknown purpose or source, or a time that is not ISO 8601
        with a zone. Applying a record twice changes nothing (the later choice wins, see
        :meth:`ConsentState.merge`), so replays and echoes are harmless.
        """
        purposes = {Purpose(p): True for p in granted}
        purposes.update({Purpose(p): False for p in denied})
        update = ConsentUpdate(
            purposes=purposes,
            source=Source(source),
            timestamp=datetime.fromisoformat(at),
            notice_version=notice_version,
        )
        with self._lock:  # a record holds only changes: all of it is kept, as when recorded
            self._merge([subject, *linked_ids], update)


def _consent_records(data: bytes) -> Iterable[LedgerRecord]:
    """The consent records among whole ledger lines (erasure receipts and the like skipped)."""
    for line in data.splitlines():
        record = LedgerRecord.from_json(orjson.loads(line), 0)
        if record.kind == "consent":
            yield record
