"""Gzip of closed NDJSON files, off the request path, safe against a crash at any point.

A closed ``X.ndjson`` becomes ``X.ndjson.gz`` in four steps: compress into
``X.ndjson.gz.<pid>.tmp``, fsync it, rename it to ``X.ndjson.gz`` (atomic) and fsync the
directory, then unlink ``X.ndjson``. A crash leaves one of: the original alone (with perhaps a
temporary file, which :func:`finish_interrupted` deletes), or the original and a complete
``.gz`` (the original is then deleted), or the ``.gz`` alone. Readers never see a partial
``.gz`` under its final name. The pid in the temporary name keeps two processes that pick the
same file at start from writing into one temporary file.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import queue
import shutil
import threading
from pathlib import Path
from typing import BinaryIO, Final

from journeykit.collector._file_lock import lock_current

__all__ = [
    "Compressor",
    "finish_interrupted",
    "gzip_file",
    "pid_alive",
    "process_start",
    "writer_alive",
]

log = logging.getLogger("journeykit.collector")

_SUFFIX: Final = ".gz"
_LEVEL: Final = 6  # zlib's default: most of the ratio of 9 at a third of its time


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def gzip_file(path: Path) -> Path | None:
    """Compress the closed file ``path`` to ``path.gz`` atomically and remove ``path``.

    Returns the ``.gz``, or ``None`` when ``path`` is gone (another process compressed it).
    Raises ``OSError`` when the disk refuses; ``path`` is then left as it was.
    """
    target = path.with_name(path.name + _SUFFIX)
    temp = path.with_name(f"{target.name}.{os.getpid()}.tmp")
    source = _open_locked(path)
    if source is None:
        return None
    try:
        try:
            with temp.open("wb") as raw:
                with gzip.GzipFile(
                    filename="", mode="wb", fileobj=raw, compresslevel=_LEVEL
                ) as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
                raw.flush()
                os.fsync(raw.fileno())
                stat = os.fstat(source.fileno())
            # The original's times, so the dedup rebuild's window reads the .gz like it.
            os.utime(temp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            temp.replace(target)
            _fsync_dir(path.parent)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        path.unlink(missing_ok=True)
    finally:
        source.close()  # releases the lock, once the original is gone or kept
    return target


def _open_locked(path: Path) -> BinaryIO | None:
    """``path`` open for reading under an exclusive ``flock``; ``None`` if it is gone.

    A data-subject erasure rewrites a file under the same lock and renames the copy over it:
    compressing the old inode meanwhile would bring back the lines it removed. So the lock is
    held from the read to the unlink (``_file_lock``).
    """
    fd = lock_current(path)
    return None if fd is None else os.fdopen(fd, "rb")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _tmp_pid(path: Path) -> int | None:
    # X.ndjson.gz.<pid>.tmp
    pid = path.name.removesuffix(".tmp").rpartition(".")[2]
    return int(pid) if pid.isdigit() else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (this process counts; another user's too)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_CLOCK_SLACK = 2.0
"""Seconds a process may seem to have started after what it wrote: a file's name holds whole
seconds, and the boot time a start is reckoned from is whole seconds too."""


def process_start(pid: int) -> float | None:
    """When process ``pid`` started, as a Unix time; ``None`` where ``/proc`` cannot tell."""
    boot = _boot_time()
    if boot is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        # The fields after "pid (name)", whose name may hold spaces; starttime is field 22.
        ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


@functools.cache
def _boot_time() -> int | None:
    """When this host booted (``/proc/stat``); read once: the start-up checks ask per file."""
    try:
        return next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_bytes().splitlines()
            if line.startswith(b"btime ")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def writer_alive(pid: int, wrote_at: float) -> bool:
    """Whether the process ``pid`` that wrote something at ``wrote_at`` still runs.

    A running process with that pid may be a later one: a container's collector is PID 1
    after every restart, and its workers get the same few pids. A process started after the
    write is not the writer, so its predecessor's files are repaired and compressed.
    """
    if not pid_alive(pid):
        return False
    started = process_start(pid)
    return started is None or started < wrote_at + _CLOCK_SLACK


def finish_interrupted(root: Path) -> int:
    """Clean up compressions a crash interrupted under ``root``; returns how many.

    Temporary files of dead processes are deleted (their original is still there), and an
    original whose ``.gz`` is complete is deleted (the crash came between rename and unlink).
    """
    if not root.is_dir():
        return 0
    count = 0
    for temp in sorted(root.rglob("*.ndjson.gz.*.tmp")):
        pid = _tmp_pid(temp)
        if pid is None or not writer_alive(pid, _mtime(temp)):
            temp.unlink(missing_ok=True)
            count += 1
    for done in sorted(root.rglob("*.ndjson.gz")):
        original = done.with_name(done.name.removesuffix(_SUFFIX))
        if original.exists():
            # A live process may be between its rename and its unlink: the .gz is complete
            # either way, so removing the original now is what that process does next.
            original.unlink(missing_ok=True)
            count += 1
    if count:
        log.warning("journeykit collector: finished %d interrupted gzip step(s) in %s", count, root)
    return count


class Compressor:
    """One background thread that gzips the files handed to it, in order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.compressed = 0
        self.failed = 0

    def submit(self, path: Path) -> None:
        """Compress ``path`` soon; ignored after :meth:`close` (the next start does it)."""
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="journeykit-gzip", daemon=True
                )
                self._thread.start()
            self._queue.put(path)

    def close(self) -> None:
        """Finish the file in progress and stop; files still queued wait for the next start."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._queue.put(None)
        thread.join()

    def _run(self) -> None:
        while (path := self._queue.get()) is not None:
            try:
                gzip_file(path)
            except OSError as exc:
                # Left uncompressed and complete; the next start tries again.
                self.failed += 1
                log.error("journeykit collector: cannot gzip %s: %s", path, exc)
            else:
                self.compressed += 1
