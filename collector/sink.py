"""Append-only NDJSON files, partitioned by the UTC hour an event was received.

Layout: ``<root>/dt=YYYY-MM-DD/hr=HH/<host>-<pid>-<start>-<seq>.ndjson``. Each process writes
its own files, so workers never share one; a whole batch goes down in one ``write`` on an
``O_APPEND`` descriptor, so a line is never interleaved with another writer's. The batch is
acknowledged only after ``write`` (and, under ``fsync="always"``, ``fsync``) returned.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from journeykit.collector.settings import FsyncPolicy

__all__ = ["NdjsonSink"]


def _safe_host() -> str:
    host = socket.gethostname().split(".")[0] or "host"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in host)


class NdjsonSink:
    """Writes lines of JSON under ``root``; thread-safe; one open file at a time."""

    def __init__(
        self,
        root: Path,
        *,
        fsync: FsyncPolicy = "always",
        fsync_interval: float = 1.0,
        rotate_bytes: int = 128 * 1024 * 1024,
    ) -> None:
        self._root = root
        self._fsync = fsync
        self._fsync_interval = fsync_interval
        self._rotate_bytes = rotate_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._partition: str | None = None
        self._size = 0
        self._seq = 0
        self._last_sync = 0.0
        self._prefix = f"{_safe_host()}-{os.getpid()}-{int(time.time())}"

    @property
    def root(self) -> Path:
        return self._root

    @property
    def current_path(self) -> Path | None:
        return self._path

    def write(self, lines: list[bytes], received_at: datetime) -> Path:
        """Append ``lines`` (each without its newline) and return the file they went to.

        Raises ``OSError`` when the disk refuses; then nothing of the batch counts as written
        (a partial write is cut back off so the file never holds a torn line).
        """
        data = b"\n".join(lines) + b"\n"
        partition = received_at.astimezone(UTC).strftime("dt=%Y-%m-%d/hr=%H")
        with self._lock:
            fd, path = self._file_for(partition)
            start = self._size
            try:
                written = os.write(fd, data)
                while written < len(data):
                    written += os.write(fd, data[written:])
                self._sync(fd)
            except OSError:
                self._cut_back(fd, start)
                raise
            self._size += len(data)
            return path

    def close(self) -> None:
        with self._lock:
            self._close()

    def _sync(self, fd: int) -> None:
        if self._fsync == "always":
            os.fsync(fd)
        elif self._fsync == "interval":
            now = time.monotonic()
            if now - self._last_sync >= self._fsync_interval:
                os.fsync(fd)
                self._last_sync = now

    def _cut_back(self, fd: int, size: int) -> None:
        # If even truncation fails, close the file: the next batch starts a fresh one, and the
        # torn tail stays only in a file nothing appends to any more.
        try:
            os.ftruncate(fd, size)
        except OSError:
            self._close()

    def _file_for(self, partition: str) -> tuple[int, Path]:
        fd, path = self._fd, self._path
        if (
            fd is not None
            and path is not None
            and partition == self._partition
            and self._size < self._rotate_bytes
        ):
            return fd, path
        self._close()
        directory = self._root / partition
        directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = directory / f"{self._prefix}-{self._seq:04d}.ndjson"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._fd, self._path, self._partition = fd, path, partition
        self._size = os.fstat(fd).st_size
        return fd, path

    def _close(self) -> None:
        if self._fd is not None:
            try:
                if self._fsync != "never":
                    os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
