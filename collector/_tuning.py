"""Process settings for a serving collector: the garbage collector's and the GIL's.

``tune_for_serving`` is called by ``journeykit collector serve`` (and by each of its worker
processes) just before serving, never on import: an application that embeds the ASGI app keeps
its own settings.

**Switch interval.** The event loop checks requests, holding the GIL for a millisecond or more
at a time; the commit thread (``_committer``) makes about seven system calls per group commit
(lock, two stats, write, fsync, unlock, waking the loop), and each releases the GIL. Whenever
the loop has work, taking the GIL back after such a call waits for the loop to be asked to
drop it, after CPython's switch interval: 5 ms by default, so a group commit whose fsync took
0.2 ms took up to 35 ms, and every request in it waited that long (the fsync histogram read
up to 25-50 ms while ``strace`` timed the fsync calls themselves at 8 ms at most). At 0.5 ms,
paced at 800 requests/s, p99 went from 13-90 ms to 9-18 ms and the commit's max from 10-25 ms
to 5-10 ms, for no CPU per event that the same runs could tell from noise
(docs/benchmarks.md, "Session 6").
"""

from __future__ import annotations

import sys

from journeykit.collector._gc import tune_gc

__all__ = ["SWITCH_INTERVAL", "tune_for_serving"]

SWITCH_INTERVAL = 0.0005
"""``sys.setswitchinterval`` while serving, in seconds (CPython's default: 0.005)."""


def tune_for_serving() -> None:
    """The garbage collector's settings (``_gc.tune_gc``) and the switch interval above."""
    tune_gc()
    sys.setswitchinterval(SWITCH_INTERVAL)
