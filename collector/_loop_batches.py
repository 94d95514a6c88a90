"""Brief work decided on the event loop, every job that is ready in one pass of it at once.

With a local store (SQLite) a decision is a read of microseconds: handing it to a thread
costs more than it saves (two thread wake-ups, then a callback that waits behind everything
the busy loop has queued). But decided one by one, concurrent requests lose what deciding
them together saves (one consent check, one store read for all). :class:`LoopBatches`
decides on the loop, after the handlers that are ready in the same pass have asked too: the
first job of a pass schedules the batch with ``call_soon``, so the handlers queued before it
join, and the batch runs before anything that becomes ready later.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["LoopBatches"]

T = TypeVar("T")
R = TypeVar("R")


class LoopBatches(Generic[T, R]):
    """``run_one(job)`` for one job, ``run_many(jobs)`` for several, on the calling loop.

    ``run_many`` answers in order what ``run_one`` would answer for each; if it raises, the
    jobs are run one by one, so one job's failure fails that job only. Jobs must be brief:
    they block the loop.
    """

    def __init__(self, run_one: Callable[[T], R], run_many: Callable[[list[T]], list[R]]) -> None:
        self._run_one = run_one
        self._run_many = run_many
        # Per loop (tests and embedders may run several); weak, so that a loop closed before
        # it ran its batch is not kept alive by it.
        self._waiting: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, list[tuple[T, asyncio.Future[R]]]
        ] = weakref.WeakKeyDictionary()

    async def run(self, job: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        waiting = self._waiting.get(loop)
        if waiting is None:
            self._waiting[loop] = [(job, future)]
            loop.call_soon(self._run_batch, loop)
        else:
            waiting.append((job, future))
        return await future

    def _run_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._waiting.pop(loop)
        live = [(job, future) for job, future in batch if not future.done()]  # not cancelled
        found: list[R] = []
        if len(live) > 1:
            try:
                found = self._run_many([job for job, _ in live])
            except Exception:  # noqa: BLE001 - one by one below: each fails on its own
                found = []
        if len(found) == len(live):
            for (_, future), result in zip(live, found, strict=True):
                future.set_result(result)
            return
        for job, future in live:
            try:
                future.set_result(self._run_one(job))
            except Exception as exc:  # noqa: BLE001 - handed to that job's caller
                future.set_exception(exc)
