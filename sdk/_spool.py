"""The durable spool: batches that could not be delivered, kept on disk until they can be.

Layout: one file per batch in ``spool_dir``, named ``<wall-clock ns>-<pid>-<seq>.jks`` so that
sorting names sorts records oldest first, and a ``corrupt/`` folder for records moved aside.

Why one file per batch rather than an append-only log:

- **Crash safety without recovery code.** A record is written to a ``.tmp-`` name, fsynced,
  renamed to its final name and the directory fsynced. ``rename`` is atomic, so a SIGKILL at
  any moment leaves either no record or a whole one; a torn write can only be a
  ``.tmp-*.tmp`` file, which is never read and is swept once its writer is gone. A log would
  need a framed format, a torn-tail scan on every start, and compaction to reclaim space.
- **Sharing a directory between processes** (gunicorn workers, a restarted app while the old one
  still runs): a replayer claims a record by taking ``fcntl.flock(LOCK_EX | LOCK_NB)`` on it,
  delivers it, and unlinks it while still holding the lock. The kernel drops the lock when its
  holder dies (SIGKILL included), so an abandoned claim needs no timeout or pid check, and a
  record is never replayed by two processes at once. A record delivered but not yet unlinked
  when its replayer dies is sent again later: the collector deduplicates on ``messageId``.
- **Eviction and corruption are per record:** drop the oldest file; move one bad file aside.

The cost is two fsyncs per spooled batch (under a millisecond here), paid only while the
collector is unreachable. Each record also carries a CRC-32 and its length and event count, so
a file damaged after the fact (a bad disk, a hand edit) is detected, moved to ``corrupt/`` and
counted (``spool_corrupt``) instead of being sent or crashing the worker. Records hold the
encoded events exactly as they would have been sent: already gated and pseudonymized.

POSIX only (``fcntl``), on a local filesystem (``flock`` over NFS is not reliable).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from journeykit.sdk._buffer import Item

__all__ = ["Claim", "CorruptRecord", "Spool", "decode_record", "encode_record"]

log = logging.getLogger("journeykit")

MAGIC = b"JKS1"
SUFFIX = ".jks"
TMP_PREFIX = ".tmp-"
CORRUPT_DIR = "corrupt"
_ORPHAN_AGE = 60.0  # a .tmp- file this old whose writer holds no lock was left by a crash
_RESCAN = 2.0  # how often to look again for records when the last look found none claimable

Report = Callable[[str | None, str, str], None]
"""(message_id, reason, detail): counts and reports one dropped event."""


class CorruptRecord(Exception):
    """A spool file that is not a whole, intact record."""


def encode_record(items: Sequence[Item]) -> bytes:
    """A record: ``JKS1 <count> <body length> <crc32>\\n`` then the payloads, one a line."""
    # Encoded messages never contain a raw newline (JSON escapes it inside strings).
    body = b"\n".join(payload for _, payload in items)
    return b"%s %d %d %08x\n" % (MAGIC, len(items), len(body), zlib.crc32(body)) + body


def decode_record(data: bytes) -> list[Item]:
    """The events of a record; :class:`CorruptRecord` unless it is whole and intact."""
    head, newline, body = data.partition(b"\n")
    parts = head.split(b" ")
    if not newline or len(parts) != 4 or parts[0] != MAGIC:
        raise CorruptRecord("not a spool record header")
    try:
        count, length, crc = int(parts[1]), int(parts[2]), int(parts[3], 16)
    except ValueError:
        raise CorruptRecord("not a spool record header") from None
    if len(body) != length:
        raise CorruptRecord(f"{len(body)} bytes of body, the header says {length}")
    if zlib.crc32(body) != crc:
        raise CorruptRecord("checksum mismatch")
    payloads = body.split(b"\n")
    if len(payloads) != count:
        raise CorruptRecord(f"{len(payloads)} events, the header says {count}")
    items: list[Item] = []
    for payload in payloads:
        try:
            message_id = orjson.loads(payload)["messageId"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            raise CorruptRecord("an event is not a JSON message with a messageId") from None
        items.append((str(message_id), payload))
    return items


@dataclass(slots=True)
class Claim:
    """A record this process holds the lock on, until :meth:`Spool.done` or ``release``."""

    path: Path
    fd: int
    items: list[Item]


class Spool:
    """Writes, claims, evicts and sweeps the records of one spool directory.

    Thread-safe; every method does blocking file I/O (the asyncio client calls them through
    ``asyncio.to_thread``). Drops (evictions, corrupt records) go to ``report``.
    """

    def __init__(self, directory: Path, max_bytes: int, report: Report) -> None:
        self.directory = directory
        self._max_bytes = max_bytes
        self._report = report
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._last_ns = 0
        self._held: set[int] = set()  # fds of our claims, closed in a forked child
        self._maybe_records = True
        self._skipped: set[str] = set()  # records this process cannot read nor move aside
        self._next_scan = 0.0
        (directory / CORRUPT_DIR).mkdir(parents=True, exist_ok=True, mode=0o700)
        self._sweep_orphans()

    # -- writing ------------------------------------------------------------------------------

    def write(self, items: Sequence[Item]) -> bool:
        """Store ``items`` as one record, durably; then evict the oldest past ``max_bytes``.

        Returns ``False`` (and logs) when the record could not be written, e.g. a full disk.
        """
        data = encode_record(items)
        with self._lock:
            name = self._next_name()
            tmp = self.directory / f"{TMP_PREFIX}{name.removesuffix(SUFFIX)}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # the orphan sweep leaves it alone
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                    tmp.rename(self.directory / name)
                finally:
                    os.close(fd)
                self._fsync_directory()
            except OSError:
                log.exception("journeykit: could not write a spool record in %s", self.directory)
                with contextlib.suppress(OSError):
                    tmp.unlink()
                return False
            self._maybe_records = True
            self._evict()
            return True

    def _next_name(self) -> str:
        # Names sort oldest first; within this process, strictly increasing even if the wall
        # clock steps back.
        now = max(time.time_ns(), self._last_ns + 1)
        self._last_ns = now
        return f"{now:020d}-{os.getpid():07d}-{next(self._seq) % 1_000_000:06d}{SUFFIX}"

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _evict(self) -> None:
        entries = self._records()
        total = sum(size for _, size in entries)
        for path, size in entries:
            if total <= self._max_bytes:
                return
            claim = self._lock_record(path)
            if claim is None:
                continue  # being replayed right now, or already gone
            try:
                detail = f"the spool was over spool_max_bytes ({self._max_bytes:,})"
                for message_id, _ in claim.items:
                    self._report(message_id, "spool_full", detail)
                self._finish(claim)
            finally:
                self._close(claim.fd)
            total -= size

    # -- replaying ----------------------------------------------------------------------------

    def has_records(self) -> bool:
        """Whether the directory holds any record now (claimable or not)."""
        return bool(self._records())

    def may_have_records(self) -> bool:
        """Whether :meth:`claim` is worth calling: cheap, no I/O while the spool looks empty."""
        return self._maybe_records or time.monotonic() >= self._next_scan

    def claim(self) -> Claim | None:
        """Lock and read the oldest record no other replayer holds; ``None`` if there is none."""
        with self._lock:
            for path, _ in self._records():
                claim = self._lock_record(path)
                if claim is not None:
                    self._held.add(claim.fd)
                    return claim
            self._maybe_records = False
            self._next_scan = time.monotonic() + _RESCAN
            return None

    def done(self, claim: Claim) -> None:
        """The record was delivered (or given up on): delete it, then let go of its lock."""
        with self._lock:
            try:
                self._finish(claim)
            finally:
                self._held.discard(claim.fd)
                self._close(claim.fd)

    def release(self, claim: Claim) -> None:
        """Not delivered this time: leave the record for a later try (by anyone)."""
        with self._lock:
            self._held.discard(claim.fd)
            self._close(claim.fd)
            self._maybe_records = True

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited claims without unlocking the parent's."""
        for fd in self._held:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing one copy keeps the parent's lock; LOCK_UN would not
        self._held.clear()

    # -- helpers ------------------------------------------------------------------------------

    def _records(self) -> list[tuple[Path, int]]:
        out: list[tuple[Path, int]] = []
        skipped = self._skipped
        with os.scandir(self.directory) as entries:
            for entry in entries:
                name = entry.name
                if name.endswith(SUFFIX) and not name.startswith(".") and name not in skipped:
                    with contextlib.suppress(FileNotFoundError):
                        out.append((Path(entry.path), entry.stat().st_size))
        out.sort()
        return out

    def _lock_record(self, path: Path) -> Claim | None:
        """Lock and read ``path``; ``None`` if another holds it or it is gone or corrupt."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:  # another user's record (0600), a bad sector
            self._unreadable(path, exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_nlink == 0:  # delivered and deleted since we listed it
                self._close(fd)
                return None
            with open(fd, "rb", closefd=False) as file:
                data = file.read()
        except BlockingIOError:
            self._close(fd)
            return None
        except OSError as exc:
            self._close(fd)
            self._unreadable(path, exc)
            return None
        try:
            return Claim(path, fd, decode_record(data))
        except CorruptRecord as exc:
            self._move_aside(path, len(data), f"corrupt ({exc})")
            self._close(fd)
            return None

    def _unreadable(self, path: Path, exc: OSError) -> None:
        """A record this process cannot read: never sent, never fatal, like a corrupt one."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return  # delivered or moved by another process meanwhile
        except OSError:
            size = 0
        self._move_aside(path, size, f"unreadable ({exc.strerror or exc})")

    def _move_aside(self, path: Path, size: int, why: str) -> None:
        """Move a record that is never to be sent to ``corrupt/``, and report it.

        One this process may not move (another user's, in a directory shared with them) is
        left in place and skipped from now on, so that neither replay nor eviction stops at it
        again.
        """
        target = self.directory / CORRUPT_DIR / path.name
        where = f"moved to {target}"
        try:
            path.rename(target)
        except FileNotFoundError:
            pass
        except OSError:
            self._skipped.add(path.name)
            where = "left in place, skipped"
        detail = f"spool record {path.name} ({size:,} bytes) is {why}; {where}"
        self._report(None, "spool_corrupt", detail)

    def _finish(self, claim: Claim) -> None:
        with contextlib.suppress(FileNotFoundError):
            claim.path.unlink()

    @staticmethod
    def _close(fd: int) -> None:
        with contextlib.suppress(OSError):
            os.close(fd)

    def _sweep_orphans(self) -> None:
        cutoff = time.time() - _ORPHAN_AGE
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if not entry.name.startswith(TMP_PREFIX):
                    continue
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime > cutoff:
                        continue  # perhaps still being written
                    fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        Path(entry.path).unlink()  # a torn write, never reported durable
                    finally:
                        os.close(fd)
