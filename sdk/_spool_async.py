"""Replaying the spool from asyncio: ``_spool_policy.replay``'s twin, file I/O off the loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from journeykit.sdk._spool import Report, Spool
from journeykit.sdk._spool_policy import SPOOLABLE, Outage, settle_replayed
from journeykit.sdk._stats import _Counters
from journeykit.sdk._transport import BatchOutcome

__all__ = ["replay_async"]

log = logging.getLogger("journeykit")


async def replay_async(
    spool: Spool,
    attempt: Callable[[list[bytes]], Awaitable[BatchOutcome]],
    outage: Outage,
    counters: _Counters,
    report: Report,
    stopping: Callable[[], bool],
) -> None:
    """Send spooled records, oldest first, until one fails, none is left, or ``stopping()``."""
    while not stopping() and outage.due() and spool.may_have_records():
        try:
            claim = await asyncio.to_thread(spool.claim)
        except OSError:
            log.exception("journeykit: could not read the spool in %s", spool.directory)
            outage.failed(None)
            return
        if claim is None:
            outage.recovered()  # nothing left to try the collector with
            return
        if outage.active:
            counters.add("retries")
        try:
            outcome = await attempt([payload for _, payload in claim.items])
        except asyncio.CancelledError:
            spool.release(claim)  # closes one file: cheap enough for the loop
            raise
        except Exception:  # keep the record: a later try may succeed
            log.exception("journeykit: unexpected error replaying a spool record")
            outcome = BatchOutcome(False, "shutdown")
        if not outcome.delivered and outcome.failure in SPOOLABLE:
            spool.release(claim)
            outage.failed(outcome.retry_after)
            return
        await asyncio.to_thread(spool.done, claim)
        outage.recovered()
        settle_replayed(claim.items, outcome, counters, report)
