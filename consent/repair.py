"""Repairing a ledger after a crash: the incomplete last line is moved aside, never deleted."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from journeykit.consent._ledgerfile import count_lines, torn_tail, write_all
from journeykit.consent.records import LedgerError

__all__ = ["RepairResult", "move_torn_tail", "repair_checkpoints", "repair_ledger"]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RepairResult:
    """What ``repair_ledger`` did: the torn line moved aside (if any) and where to."""

    repaired: bool
    line: int | None = None
    size: int = 0
    moved_to: Path | None = None


def repair_ledger(path: Path | str, *, clock: Callable[[], datetime] = _now) -> RepairResult:
    """Move an incomplete last line to ``<ledger>.torn-<time>`` and cut it from the ledger.

    Nothing else is changed: complete lines are never touched. Safe while writers run.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        raise LedgerError(f"no consent ledger at {path}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return move_torn_tail(fd, path, clock)
    finally:
        os.close(fd)


def repair_checkpoints(path: Path | str, *, clock: Callable[[], datetime] = _now) -> RepairResult:
    """:func:`repair_ledger` for the signed checkpoints file (``checkpoints.ndjson``).

    A crash while a checkpoint was written leaves its line torn; the next checkpoint would be
    glued onto it and both be unreadable. The records it signed are proved again by the next.
    Writers of checkpoints hold the ledger's lock, so this takes it too.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return RepairResult(repaired=False)
    ledger = path.with_name("ledger.ndjson")
    try:
        lock = os.open(ledger, os.O_RDONLY) if ledger.exists() else None
        try:
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            return move_torn_tail(fd, path, clock)
        finally:
            if lock is not None:
                os.close(lock)
    finally:
        os.close(fd)


def move_torn_tail(fd: int, path: Path, clock: Callable[[], datetime] = _now) -> RepairResult:
    """Move the file's incomplete last line aside (``<name>.torn-<time>``), under a lock held."""
    size = os.fstat(fd).st_size
    torn = torn_tail(fd, size)
    if torn is None:
        return RepairResult(repaired=False)
    offset, length = torn
    line = count_lines(fd, offset) + 1
    side = path.with_name(f"{path.name}.torn-{clock().strftime('%Y%m%dT%H%M%S%fZ')}")
    side_fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        write_all(side_fd, os.pread(fd, length, offset))
        os.fsync(side_fd)
    finally:
        os.close(side_fd)
    os.ftruncate(fd, offset)
    os.fsync(fd)
    return RepairResult(repaired=True, line=line, size=length, moved_to=side)
