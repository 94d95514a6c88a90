"""The append-only consent ledger: one hash-chained NDJSON line per consent change.

Writers serialise on a thread lock and on ``fcntl.flock`` of the ledger file, and read the last
record's hash under that lock, so the chain stays linear when several threads and processes
append. A batch goes down in one ``write``. Durability is a policy: ``always`` fsyncs before
``append`` returns (threads waiting to sync share one fsync: group commit), ``interval`` at most
every ``sync_interval`` seconds, ``never`` leaves it to the OS; ``flush()`` forces it. A
checkpoint is written only after the records it covers were fsynced, so a signed checkpoint
never points past what survives a crash. Line formats: ``_canonical`` and ``checkpoints``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

import orjson

from journeykit.consent._canonical import GENESIS_HASH, encode_line, parse_time
from journeykit.consent._ledgerfile import count_lines, last_line, torn_tail, write_all
from journeykit.consent._paths import LedgerPaths
from journeykit.consent.checkpoints import LedgerSigner, checkpoint_line, read_checkpoints
from journeykit.consent.purposes import Purpose
from journeykit.consent.records import (
    LedgerError,
    LedgerRecord,
    RecordKind,
    TornLedgerError,
    build_body,
)
from journeykit.consent.repair import move_torn_tail
from journeykit.consent.state import Source

__all__ = ["ConsentChange", "ConsentLedger", "Durability"]

Durability = Literal["always", "interval", "never"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentChange:
    """One change to append; the fields of a record that the caller decides."""

    subject: str
    granted: Iterable[Purpose | str] = ()
    denied: Iterable[Purpose | str] = ()
    source: Source | str = Source.API
    method: str | None = None
    notice_version: str | None = None
    notice_hash: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    withdrawal: bool = False
    linked_ids: Iterable[str] = ()
    at: datetime | None = None
    """When the person made the choice; now if None (set it for imports)."""
    kind: RecordKind | str = RecordKind.CONSENT
    reference: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class ConsentLedger:
    """Appends consent records to ``path``; safe across threads and processes.

    Use as a context manager, or call ``close()``: it syncs and checkpoints what is left.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        signer: LedgerSigner | None = None,
        checkpoints_path: Path | str | None = None,
        durability: Durability = "always",
        sync_interval: float = 1.0,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        if durability not in ("always", "interval", "never"):
            raise LedgerError(f"durability must be always, interval or never, not {durability!r}")
        if checkpoint_every < 1:
            raise LedgerError("checkpoint_every must be at least 1")
        self.path = Path(path)
        self.checkpoints_path = (
            self.path.with_name("checkpoints.ndjson")
            if checkpoints_path is None
            else Path(checkpoints_path)
        )
        self.signer = signer
        self._durability = durability
        self._sync_interval = sync_interval
        self._checkpoint_every = checkpoint_every
        self._checkpoint_interval = checkpoint_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._fd: int | None = None
        self._cp_fd: int | None = None
        self._pid = 0
        # What we know of the file's end: valid while its size is unchanged.
        self._size = -1
        self._last: tuple[int, str] = (0, GENESIS_HASH)
        self._cp_size = -1
        self._cp_last: tuple[int, float] = (0, 0.0)  # seq covered, when (epoch seconds)
        self._written_gen = 0
        self._synced_gen = 0
        self._last_sync = time.monotonic()

    @classmethod
    def open(
        cls,
        data_dir: Path | str,
        *,
        environ: dict[str, str] | None = None,
        demo_key: bool = True,
        **options: Any,
    ) -> Self:
        """The ledger under ``<data-dir>/consent/``, signing with the configured key.

        The key is ``$JOURNEYKIT_LEDGER_SIGNING_KEY_FILE``; without it, and with ``demo_key``,
        an embedded-demo key is made under ``<data-dir>/consent/`` (mode 0600).
        """
        paths = LedgerPaths.under(data_dir)
        signer = LedgerSigner.configured(data_dir, environ=environ, create_demo=demo_key)
        return cls(paths.ledger, signer=signer, checkpoints_path=paths.checkpoints, **options)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------

    def append(self, subject: str, **fields: Any) -> LedgerRecord:
        """Append one change (the fields of :class:`ConsentChange`); the record as written.

        Raises LedgerError for a bad field, or TornLedgerError if the ledger needs repair.
        """
        return self.append_many([ConsentChange(subject=subject, **fields)])[0]

    def append_many(self, changes: Iterable[ConsentChange]) -> list[LedgerRecord]:
        """Append a batch in one write (and at most one fsync); the records as written."""
        bodies = [self._body(change) for change in changes]
        if not bodies:
            return []
        with self._lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                seq, prev = self._tail(fd)
                chunks: list[bytes] = []
                records: list[LedgerRecord] = []
                for body in bodies:
                    seq += 1
                    body["seq"], body["prev_hash"] = seq, prev
                    encoded, prev = encode_line(body)
                    chunks.append(encoded)
                    body["hash"] = prev
                    records.append(
                        LedgerRecord.from_json(body, seq)
                    )  # clean ledger: seq n on line n
                data = b"".join(chunks)
                start = os.fstat(fd).st_size
                try:
                    write_all(fd, data)
                except OSError:
                    # A full disk may take part of the batch: cut it off again, or every
                    # later append would meet a torn last line and fail until a repair.
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                    raise
                self._size += len(data)
                self._last = (seq, prev)
                self._written_gen += 1
                generation = self._written_gen
                if self.signer is not None and self._checkpoint_due(seq):
                    self._write_checkpoint(self.signer, fd, seq, prev)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        if self._durability == "always" or (
            self._durability == "interval"
            and time.monotonic() - self._last_sync >= self._sync_interval
        ):
            self._sync(generation)
        return records

    def flush(self) -> None:
        """Force every record appended so far to disk."""
        with self._lock:
            generation = self._written_gen
        self._sync(generation)

    def checkpoint(self) -> bool:
        """Sign a checkpoint for the last record now; False if nothing is uncovered or no key."""
        signer = self.signer
        if signer is None:
            return False
        with self._lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                seq, record_hash = self._tail(fd)
                if seq == 0 or self._checkpoint_state()[0] >= seq:
                    return False
                self._write_checkpoint(signer, fd, seq, record_hash)
                return True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Sync, checkpoint the records no checkpoint covers yet, and close the files."""
        if self._fd is None or self._pid != os.getpid():
            return
        self.flush()
        self.checkpoint()
        with self._lock:
            for fd in (self._fd, self._cp_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._cp_fd = None

    # -- internals ----------------------------------------------------------------------------

    def _body(self, change: ConsentChange) -> dict[str, Any]:
        return build_body(
            subject=change.subject,
            granted=change.granted,
            denied=change.denied,
            source=change.source,
            method=change.method,
            notice_version=change.notice_version,
            notice_hash=change.notice_hash,
            ip=change.ip,
            user_agent=change.user_agent,
            withdrawal=change.withdrawal,
            linked_ids=change.linked_ids,
            at=change.at or self._clock(),
            kind=change.kind,
            reference=change.reference,
        )

    def _open(self) -> int:
        # A forked child must not share the parent's descriptor position or lock state.
        if self._fd is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            self._cp_fd = None
            self._pid = os.getpid()
            self._size = -1
            self._cp_size = -1
        return self._fd

    def _tail(self, fd: int) -> tuple[int, str]:
        """(seq, hash) of the last record, re-read when another writer changed the file."""
        size = os.fstat(fd).st_size
        if size == self._size:
            return self._last
        if torn := torn_tail(fd, size):
            raise TornLedgerError(self.path, count_lines(fd, torn[0]) + 1, torn[1])
        if size == 0:
            last: tuple[int, str] = (0, GENESIS_HASH)
        else:
            _, line = last_line(fd, size)
            try:
                data = orjson.loads(line)
                last = (int(data["seq"]), str(data["hash"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                raise LedgerError(
                    f"{self.path}: the last record cannot be read; run `journeykit consent "
                    "verify` before appending"
                ) from None
        self._size, self._last = size, last
        return last

    def _sync(self, generation: int) -> None:
        with self._sync_lock:
            if self._synced_gen >= generation or self._fd is None:
                return  # a sync that started after our write already covered it
            target = self._written_gen
            os.fsync(self._fd)
            self._synced_gen = max(self._synced_gen, target)
            self._last_sync = time.monotonic()

    def _checkpoint_fd(self) -> int:
        if self._cp_fd is None:
            self.checkpoints_path.parent.mkdir(parents=True, exist_ok=True)
            self._cp_fd = os.open(
                self.checkpoints_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640
            )
        return self._cp_fd

    def _checkpoint_state(self) -> tuple[int, float]:
        """(seq covered, when) of the newest checkpoint, re-read when another writer added one."""
        size = os.fstat(self._checkpoint_fd()).st_size
        if size != self._cp_size:
            covered: tuple[int, float] = (0, time.time())
            for cp in read_checkpoints(self.checkpoints_path, size):
                if cp.problem is None and cp.seq >= covered[0]:
                    covered = (cp.seq, parse_time(cp.at).timestamp())
            self._cp_size, self._cp_last = size, covered
        return self._cp_last

    def _checkpoint_due(self, seq: int) -> bool:
        covered, when = self._checkpoint_state()
        return seq - covered >= self._checkpoint_every or (
            seq > covered and time.time() - when >= self._checkpoint_interval
        )

    def _write_checkpoint(self, signer: LedgerSigner, fd: int, seq: int, record_hash: str) -> None:
        """Called under both locks. Syncs the ledger first: never sign what may not survive."""
        os.fsync(fd)
        self._synced_gen = self._written_gen
        line = checkpoint_line(signer, seq, record_hash, self._clock())
        cp_fd = self._checkpoint_fd()
        # A crash mid-checkpoint left a torn line: glued to it, this one would be unreadable.
        if move_torn_tail(cp_fd, self.checkpoints_path).repaired:
            self._cp_size = -1  # re-read below
        self._checkpoint_state()  # brings _cp_size up to date before we add to it
        write_all(cp_fd, line)
        if self._durability != "never":
            os.fsync(cp_fd)
        self._cp_size += len(line)
        self._cp_last = (seq, time.time())
