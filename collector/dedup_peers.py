"""One dedup window for the worker processes of one data dir, shared through the disk.

With ``--workers N`` the kernel hands each new connection to any worker, so a client's resend
(after a timeout, after a worker was killed) usually reaches another worker than its first
copy did; with a window per process it was stored again (4 workers, 60 events resent once on
fresh connections: 50 stored twice). Here each worker appends the messageIds it stored to a
journal of its own under ``<data-dir>/dedup/`` (one JSON array per group commit, after the
events' fsync), and a thread in each worker reads the other workers' journals every
:data:`POLL` seconds into its window. A resend is caught once its first copy's ids were read:
within a few tens of milliseconds of the first copy's answer, far less than any client waits
before resending. ``profile_store = "redis"`` shares the window exactly, across hosts too.

A journal is started afresh every :data:`ROTATE_SECONDS`, and a journal untouched for longer
than the window plus that is deleted by whichever worker sees it first: a writer rotates before
it appends to a journal that old, so nothing is written to a deleted one. Only workers started
together (``journeykit collector serve --workers N``) share this way; what any process stored
before is in the NDJSON files, which every start reads (``recovery.recent_message_ids``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import orjson

from journeykit.collector.dedup import Deduplicator
from journeykit.collector.sink import host_tag
from journeykit.consent._ledgerfile import write_all

__all__ = ["POLL", "ROTATE_SECONDS", "PeerJournal", "PeerReader"]

log = logging.getLogger("journeykit.collector")

POLL = 0.05
"""Seconds between two reads of the other workers' journals."""

ROTATE_SECONDS = 600.0
"""A worker's journal is started afresh after this long, so old ones can be deleted whole."""

_SUFFIX = ".ids"


class PeerJournal:
    """This process's journal of stored messageIds; appended by the commit thread only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.prefix = f"{host_tag()}-{os.getpid()}-{int(time.time())}-"
        self._seq = 0
        self._fd: int | None = None
        self._opened = 0.0
        self.errors = 0
        self._warned = False

    def append(self, ids: list[str]) -> None:
        """Add ``ids`` (already stored and fsynced) for the other workers to read.

        A failure costs only the sharing of these ids (the events are on disk): logged once,
        counted in :attr:`errors`, never raised into the request.
        """
        if not ids:
            return
        data = orjson.dumps(ids) + b"\n"
        try:
            write_all(self._current(), data)
        except OSError as exc:
            self.errors += 1
            # A partial line stays the old journal's tail, never read; the next append starts
            # a fresh journal.
            self._close()
            if not self._warned:
                self._warned = True
                log.warning(
                    "journeykit collector: cannot share stored messageIds with the other "
                    "workers (%s): a resend reaching another worker may be stored again",
                    exc,
                )

    def close(self) -> None:
        self._close()

    def _current(self) -> int:
        now = time.monotonic()
        if self._fd is not None and now - self._opened < ROTATE_SECONDS:
            return self._fd
        self._close()
        self._seq += 1
        path = self.root / f"{self.prefix}{self._seq:04d}{_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._opened = now
        return self._fd

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PeerReader:
    """Reads the other workers' journals into ``window`` on a thread of its own."""

    def __init__(self, root: Path, own_prefix: str, window: Deduplicator, horizon: float) -> None:
        self._root = root
        self._own = own_prefix
        self._window = window
        self._horizon = horizon + ROTATE_SECONDS  # a journal older than this is all expired
        # Where each journal was read up to. What they held at start is in the NDJSON files,
        # read by this process's start after these offsets were taken: nothing falls between.
        self._offsets: dict[str, int] = {}
        self._done: set[str] = set()  # read to the end, and no longer written
        for name in self._journals():
            try:
                self._offsets[name] = (root / name).stat().st_size
            except FileNotFoundError:
                continue
        self.ids_read = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = time.monotonic()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="journeykit-dedup-peers", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def read_once(self) -> int:
        """Read what the other journals gained since the last call; how many ids.

        A journal its writer has rotated away from (a later one of the same writer exists)
        no longer grows: read to its end once, then passed over without a ``stat``, so a
        long window's many journals cost a directory listing per poll, not a read each.
        """
        names = self._journals()
        writers: dict[str, str] = {}  # journal -> its writer
        newest: dict[str, tuple[int, str]] = {}  # writer -> its newest journal
        for name in names:
            writer, _, seq = name.removesuffix(_SUFFIX).rpartition("-")
            writers[name] = writer
            number = int(seq) if seq.isdigit() else -1
            if number > newest.get(writer, (-2, ""))[0]:
                newest[writer] = (number, name)
        count = 0
        for name in names:
            if name in self._done or name.startswith(self._own):
                continue
            count += self._read(self._root / name, self._offsets.get(name, 0))
            if newest[writers[name]][1] != name:  # rotated away from, now read to its end
                self._done.add(name)
        listed = set(names)
        for name in set(self._offsets) - listed:  # deleted meanwhile
            del self._offsets[name]
        self._done &= listed
        if time.monotonic() - self._last_sweep > 60:
            self._sweep()
        self.ids_read += count
        return count

    def _read(self, path: Path, offset: int) -> int:
        try:
            with path.open("rb") as handle:
                if os.fstat(handle.fileno()).st_size <= offset:
                    return 0  # nothing new: no read
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1  # a line being written is read once it is whole
        if end == 0:
            return 0
        self._offsets[path.name] = offset + end
        ids: list[str] = []
        for line in data[:end].splitlines():
            try:
                parsed = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # the torn tail of a writer that failed mid-append
            if isinstance(parsed, list):
                ids.extend(i for i in parsed if isinstance(i, str))
        if ids:
            self._window.commit(ids)
        return len(ids)

    def _journals(self) -> list[str]:
        """The names of the journals in the directory now (none if it cannot be listed)."""
        try:
            return [e.name for e in os.scandir(self._root) if e.name.endswith(_SUFFIX)]
        except OSError:
            return []

    def _sweep(self) -> None:
        self._last_sweep = time.monotonic()
        limit = time.time() - self._horizon
        for name in self._journals():
            path = self._root / name
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
            except FileNotFoundError:
                continue

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            try:
                self.read_once()
            except Exception:  # a bug must not end the sharing silently: logged, retried
                log.exception("journeykit collector: reading the other workers' messageIds")
