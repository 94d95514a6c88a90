"""The background thread that writes queued profile updates every flush interval.

It holds the engine weakly (an engine dropped without ``close()`` is not kept alive by its own
thread) and never raises: a failed flush is counted and logged by the engine, and the events
stay queued for the next attempt.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Protocol

__all__ = ["Flusher"]

log = logging.getLogger("journeykit.collector")


class _Flushable(Protocol):
    def flush_due(self) -> None: ...


class Flusher:
    """Calls ``engine.flush_due()`` every ``interval`` seconds until stopped."""

    def __init__(self, engine: _Flushable, interval: float) -> None:
        self._engine = weakref.ref(engine)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="journeykit-decisions-flush", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            engine = self._engine()
            if engine is None:
                return
            try:
                engine.flush_due()
            except Exception:  # a dead flusher would silently stop all profile writes
                log.exception("journeykit decisions: background flush failed")
            del engine

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
