"""Append-only NDJSON files, partitioned by the UTC hour an event was received.

Layout: ``<root>/dt=YYYY-MM-DD/hr=HH/<host>-<pid>-<start>-<seq>.ndjson``. Each process writes
its own files, so workers never share one; each batch goes down in whole ``write`` calls on an
``O_APPEND`` descriptor, so a line is never interleaved with another writer's. A file closed
by rotation is handed to ``on_closed`` (the collector gzips it there when configured).

A batch is acknowledged only after its bytes were written and, under ``fsync="always"``,
forced to disk. Group commit keeps that cheap under concurrency: while one thread writes and
fsyncs, the batches of other threads queue up, and the next leader writes them all and pays
for a single fsync on behalf of every one of them.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from journeykit.collector.settings import FsyncPolicy
from journeykit.consent._ledgerfile import write_all

__all__ = ["NdjsonSink", "host_tag"]

# U+0085 (NEL), U+2028 and U+2029 in UTF-8, and their escapes. JSON allows them raw inside
# strings, but Python's str.splitlines() and pre-ES2019 JavaScript end a line there. Looking
# for one byte is memchr (~1 us for a batch of 100 events), for a sequence 20 times that: a
# sequence is looked for only in a batch that holds its first and its last byte.
_ESCAPES = tuple(
    (raw[:1], raw[-1:], raw, escaped)
    for raw, escaped in (
        (b"\xc2\x85", b"\\u0085"),
        (b"\xe2\x80\xa8", b"\\u2028"),
        (b"\xe2\x80\xa9", b"\\u2029"),
    )
)


def _escape_separators(data: bytes) -> bytes:
    """``data`` with U+0085, U+2028 and U+2029 as JSON escapes: the same values, one line each.

    Outside strings JSON is ASCII, so these bytes only occur inside strings, where ``\\uXXXX``
    means the same character. A UTF-8 lead byte never occurs inside another character, so a
    plain byte replace cannot cut one in two.
    """
    for first, last, raw, escaped in _ESCAPES:
        if first in data and last in data and raw in data:
            data = data.replace(raw, escaped)
    return data


def host_tag() -> str:
    """This host's name as it appears in file names: letters, digits, ``-`` and ``_`` only."""
    host = socket.gethostname().split(".")[0] or "host"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in host)


@dataclass(slots=True)
class _Ticket:
    data: bytes
    partition: str
    path: Path | None = None
    error: OSError | None = None
    done: bool = False


class NdjsonSink:
    """Writes lines of JSON under ``root``; thread-safe; one open file at a time."""

    def __init__(
        self,
        root: Path,
        *,
        fsync: FsyncPolicy = "always",
        fsync_interval: float = 1.0,
        rotate_bytes: int = 128 * 1024 * 1024,
        on_fsync: Callable[[float], None] | None = None,
        on_closed: Callable[[Path], None] | None = None,
    ) -> None:
        self._root = root
        self._on_fsync = on_fsync
        self._on_closed = on_closed
        self._fsync = fsync
        self._fsync_interval = fsync_interval
        self._rotate_bytes = rotate_bytes
        self._cond = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._leader = False
        # Only the current leader touches the fields below, so they need no lock of their own.
        self._fd: int | None = None
        self._path: Path | None = None
        self._partition: str | None = None
        self._size = 0
        self._locked = False  # an flock on _fd is held (see _lock)
        self._seq = 0
        self._last_sync = 0.0
        self._prefix = f"{host_tag()}-{os.getpid()}-{int(time.time())}"
        self.fsyncs = 0
        self.last_error: OSError | None = None
        """Why the latest write failed; None once a write succeeds again."""

    def write(self, lines: list[bytes], received_at: datetime) -> Path:
        """Append ``lines`` (each without its newline) and return the file they went to.

        Raises ``OSError`` when the disk refuses; then nothing of the batch counts as written
        (what was written of it is cut off again, so the file never holds a torn line).
        """
        data = _escape_separators(b"\n".join(lines) + b"\n")
        ticket = _Ticket(data, received_at.astimezone(UTC).strftime("dt=%Y-%m-%d/hr=%H"))
        with self._cond:
            self._waiting.append(ticket)
            while not ticket.done:
                if self._leader:
                    self._cond.wait()
                    continue
                self._leader = True
                group, self._waiting = self._waiting, []
                self._cond.release()
                try:
                    self._commit(group)
                finally:
                    self._cond.acquire()
                    self._leader = False
                    self._cond.notify_all()
        if ticket.error is not None:
            raise ticket.error
        if ticket.path is None:  # cannot happen: a settled ticket has an error or a path
            raise OSError("the batch was not written")
        return ticket.path

    def close(self) -> None:
        with self._cond:
            while self._leader:
                self._cond.wait()
            self._close()

    def _commit(self, group: list[_Ticket]) -> None:
        try:
            self._commit_group(group)
        finally:
            self._unlock()

    def _commit_group(self, group: list[_Ticket]) -> None:
        unsynced: list[_Ticket] = []  # written to the current file, waiting for its fsync
        synced_size = self._size  # where the current file ends on disk for sure
        for ticket in group:
            if unsynced and self._needs_new_file(ticket.partition):
                self._finish(unsynced, synced_size)
                unsynced = []
            start = -1  # where this ticket's bytes begin, once a file is open
            try:
                self._file_for(ticket.partition)
                fd, path = self._lock()
                if not unsynced:
                    synced_size = self._size
                start = self._size
                write_all(fd, ticket.data)
            except OSError as exc:
                if start >= 0:
                    self._cut_back(start)  # only this ticket's partial bytes
                self._settle([ticket], exc)
                continue
            self._size += len(ticket.data)
            ticket.path = path
            unsynced.append(ticket)
        if unsynced:
            self._finish(unsynced, synced_size)

    def _finish(self, tickets: list[_Ticket], synced_size: int) -> None:
        try:
            self._sync()
        except OSError as exc:
            # Not known to be on disk, so not acknowledged: remove the bytes, or the client's
            # retry would store them twice.
            self._cut_back(synced_size)
            self._settle(tickets, exc)
        else:
            self._settle(tickets, None)

    def _lock(self) -> tuple[int, Path]:
        """Hold the erasure lock on the current file, reopened if an erasure replaced it.

        ``journeykit dsr erase`` rewrites a file into a copy and renames the copy over it,
        holding ``flock(LOCK_EX)`` meanwhile. Held here from a group's first write to its
        fsync, the lock keeps the two apart; taken after an erasure, it is on the old, unlinked
        file, which nothing reads any more, so the path is opened again, and checked again (a
        second erasure may have replaced it in between).
        """
        while True:
            fd, path = self._fd, self._path
            if fd is None or path is None:  # cannot happen: _file_for opened one
                raise OSError("no file is open")
            if self._locked:
                return fd, path
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._locked = True
            if not self._replaced(fd, path):
                return fd, path
            self._close()  # the erasure's copy holds every byte of it, fsynced
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            self._fd, self._size = fd, os.fstat(fd).st_size

    @staticmethod
    def _replaced(fd: int, path: Path) -> bool:
        """Whether ``path`` no longer names the file open as ``fd``."""
        mine = os.fstat(fd)
        if mine.st_nlink == 0:
            return True
        try:
            named = path.stat()
        except FileNotFoundError:
            return True
        return (named.st_ino, named.st_dev) != (mine.st_ino, mine.st_dev)

    def _unlock(self) -> None:
        if self._locked and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._locked = False

    def _needs_new_file(self, partition: str) -> bool:
        return self._fd is None or partition != self._partition or self._size >= self._rotate_bytes

    def _settle(self, tickets: list[_Ticket], error: OSError | None) -> None:
        # The outcome of the latest write: /readyz reports a disk that refuses until one works.
        self.last_error = error
        for ticket in tickets:
            ticket.error = error
            ticket.done = True

    def _sync(self) -> None:
        if self._fd is None or self._fsync == "never":
            return
        now = time.monotonic()
        if self._fsync == "interval" and now - self._last_sync < self._fsync_interval:
            return
        os.fsync(self._fd)
        self._last_sync = time.monotonic()
        self.fsyncs += 1
        if self._on_fsync is not None:
            self._on_fsync(self._last_sync - now)

    def _cut_back(self, size: int) -> None:
        # If even truncation fails, close the file: the next batch starts a fresh one, and the
        # torn tail is left in a file nothing appends to, which the start-up check repairs.
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, size)
            self._size = size
        except OSError:
            self._close()

    def _file_for(self, partition: str) -> tuple[int, Path]:
        if not self._needs_new_file(partition) and self._fd is not None and self._path:
            return self._fd, self._path
        closed = self._path if self._fd is not None else None
        self._close()
        if closed is not None and self._on_closed is not None:
            # Complete: every batch in it was settled, and a failed one was cut off again.
            self._on_closed(closed)
        directory = self._root / partition
        directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = directory / f"{self._prefix}-{self._seq:04d}.ndjson"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._fd, self._path, self._partition = fd, path, partition
        self._size = os.fstat(fd).st_size
        return fd, path

    def _close(self) -> None:
        self._locked = False  # closing the descriptor releases its lock
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                if self._fsync != "never":
                    os.fsync(fd)
            finally:
                os.close(fd)
