"""One writer thread that commits what requests prepared, every waiting request in one go.

The checks of a request run on the event loop; its writes (consent ledger, events, rejections)
wait on the disk, so they run on a thread. Handing each request to a pool thread costs two
thread wake-ups and two hand-overs of the GIL per request, and while a pool thread waits for
the GIL after its fsync the request waits with it, as long as the loop keeps checking other
requests: that was the tail of the latency under load. Here one thread takes every request
that is waiting, writes them with one write per file and one fsync
(:meth:`~journeykit.collector.ingest.Ingestor.commit_many`), and wakes the loop once for all
of them: the busier the collector, the more requests share each wake-up and each fsync.

Below saturation that leaves groups of one or two requests, each paying an fsync, a wake-up of
the loop and the GIL hand-overs of the thread's system calls: at 80% of the maximum rate an
event cost ~25% more CPU than at the maximum. So while requests come in less than ``wait``
seconds apart (a moving average of the gaps between hand-overs), a group of fewer than four
waits for more, until its first request was handed over ``wait`` seconds ago. Requests further
apart are written at once (a lone request pays nothing), and so is a group whose first request
is already that old (under saturation, where groups gather while the last one is written).
Four share an fsync well enough: groups that waited for the deadline whatever their size made
the tail worse in slow stretches (docs/benchmarks.md, "Session 16").
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

from journeykit.collector.ingest import IngestResult, Prepared

__all__ = ["Committer"]

CommitMany = Callable[[list[Prepared]], list[IngestResult | OSError]]
_Waiting = list[tuple[Prepared, "asyncio.Future[IngestResult]"]]
_Settled = list[tuple["asyncio.Future[IngestResult]", IngestResult | BaseException]]

_WEIGHT = 0.2  # of the latest gap between hand-overs in their moving average
_LONGEST = 1.0  # seconds: a longer gap (a quiet spell) counts as this long
_ENOUGH = 4  # requests in a group that is written without waiting for more


class Committer:
    """Commits prepared requests on one thread, started on first use; see the module docstring."""

    def __init__(self, commit_many: CommitMany, wait: float = 0.0) -> None:
        """``wait``: seconds a group may wait for more requests (see the module docstring)."""
        self._commit_many = commit_many
        self._wait = wait
        self._cond = threading.Condition()
        self._waiting: _Waiting = []
        self._first = 0.0  # when the group's first request was handed over (monotonic)
        self._last = 0.0  # when the latest request was
        self._gap = _LONGEST  # moving average of the seconds between hand-overs
        self._thread: threading.Thread | None = None
        self._closed = False

    async def commit(self, prepared: Prepared) -> IngestResult:
        """Write ``prepared``; raises ``OSError`` if the disk refused (nothing acknowledged)."""
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        now = time.monotonic()
        with self._cond:
            if self._closed:
                raise RuntimeError("the collector is shutting down")
            self._gap += _WEIGHT * (min(now - self._last, _LONGEST) - self._gap)
            self._last = now
            if not self._waiting:
                self._first = now
            self._waiting.append((prepared, future))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="journeykit-commit", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return await future

    def close(self) -> None:
        """Write what was handed over, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if not self._waiting:
                    return
                if self._wait > 0:
                    self._gather()
                group, self._waiting = self._waiting, []
            results: list[IngestResult | BaseException]
            try:
                results = list(self._commit_many([prepared for prepared, _ in group]))
            except BaseException as exc:  # noqa: BLE001 - a defect: fail these requests, not hang them
                results = [exc] * len(group)
            loops: dict[asyncio.AbstractEventLoop, list[int]] = {}
            for index, (_, future) in enumerate(group):
                loops.setdefault(future.get_loop(), []).append(index)
            for loop, indexes in loops.items():
                settled = [(group[i][1], results[i]) for i in indexes]
                # A closed loop raises RuntimeError: nobody waits for those answers any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, settled)

    def _gather(self) -> None:
        """Wait (holding ``_cond``) for more requests, if they come closer than ``wait`` apart."""
        if self._gap >= self._wait:
            return
        deadline = self._first + self._wait
        while len(self._waiting) < _ENOUGH and not self._closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)


def _settle(
    settled: list[tuple[asyncio.Future[IngestResult], IngestResult | BaseException]],
) -> None:
    for future, result in settled:
        if future.done():  # the request was cancelled meanwhile
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
