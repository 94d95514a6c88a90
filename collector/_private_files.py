"""Files of personal data are created readable by their owner and group only (docs/security.md).

SQLite creates its database (and its ``-wal`` and ``-shm`` files after it, with the same
mode) under the process umask, usually world-readable; the profile store holds raw user ids
and behaviour, the suppression list pseudonyms. So the file is made first with the mode wanted.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRIVATE_MODE", "create_private"]

PRIVATE_MODE = 0o640


def create_private(path: Path, mode: int = PRIVATE_MODE) -> None:
    """Create ``path`` empty with ``mode`` unless it exists (an existing file keeps its mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return
    os.close(fd)
