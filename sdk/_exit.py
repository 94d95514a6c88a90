"""One deadline for the whole interpreter exit, shared by every client's exit drain.

Each client (and each garbage-collected client's worker) registers its own ``atexit`` hook,
and the hooks run one after another: given ``exit_timeout`` each, ten clients facing an
unresponsive collector held the exit ten times as long as documented. The first hook to run
fixes the deadline; the others wait only for what is left of it.
"""

from __future__ import annotations

import threading
import time

__all__ = ["exit_budget"]

_lock = threading.Lock()
_deadline: float | None = None


def exit_budget(timeout: float) -> float:
    """Seconds an exit hook may still wait; the first call fixes the process's deadline."""
    global _deadline
    with _lock:
        now = time.monotonic()
        if _deadline is None:
            _deadline = now + timeout
        return max(0.0, _deadline - now)
