"""The exclusive lock a data file's rewriters share: the compressor and data-subject erasure.

Each replaces the file whole (a ``.gz`` beside it, or a copy renamed over it), so whoever
waited for the lock may hold a file the path no longer names: it must look again.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["lock_current"]


def lock_current(path: Path) -> int | None:
    """A read-only descriptor of the file ``path`` names now, under an exclusive ``flock``.

    ``None`` when the path names nothing (compressed, or moved, meanwhile). A file replaced
    while we waited is opened again. Closing the descriptor releases the lock.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current: int | None = path.stat().st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if current is None:
            return None
