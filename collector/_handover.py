"""Blocking work off the event loop, every job that is waiting in one hand-over.

Deciding reads the profile store: with Redis a network round trip, which must not stall the
event loop, so it runs on a thread (a local SQLite read is brief and stays on the loop:
:mod:`journeykit.collector._loop_batches`); but handing one call to a worker thread and back
costs tens of µs of CPU on a small VM (two thread wake-ups, the loop's self-pipe; anyio's
``to_thread`` adds a capacity limiter and a cancel scope), a tenth of a decision.
:class:`Handover` hands over, in one go, every job that arrived while the previous hand-over
was running: one round trip between the threads per batch, not per job, and under load a batch
holds many jobs. A lone job still starts at once. With ``run_many``, a batch is done in one
call (one store read, one Redis round trip); if that raises, its jobs run one by one, so one
job's failure fails that job only.

The threads are started on first use and end after ``idle_seconds`` without work. A hand-over
is a queue put and one ``call_soon_threadsafe`` back: about half the CPU of the loop's default
executor (``run_in_executor`` adds a concurrent future, its chaining to an asyncio one, and the
executor's semaphore and condition).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Handover"]

T = TypeVar("T")
R = TypeVar("R")


class Handover(Generic[T, R]):
    """Runs ``run_one(job)`` on worker threads of its own, a batch of jobs per hand-over.

    At most ``concurrency`` batches run at once; jobs arriving meanwhile wait for the next
    batch (so under load a job waits at most for one batch before its own starts).
    ``run_many(jobs)`` (optional) answers a batch of several in order, as ``run_one`` would
    each. Bound to the event loop that first uses it (:attr:`loop`).
    """

    def __init__(
        self,
        run_one: Callable[[T], R],
        run_many: Callable[[list[T]], list[R]] | None = None,
        *,
        concurrency: int = 1,
        idle_seconds: float = 10.0,
        name: str = "journeykit-handover",
    ) -> None:
        self._run_one = run_one
        self._run_many = run_many
        self._concurrency = concurrency
        self._idle_seconds = idle_seconds
        self._name = name
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running = 0
        self._jobs: queue.SimpleQueue[list[tuple[T, asyncio.Future[R]]]] = queue.SimpleQueue()
        self._guard = threading.Lock()  # thread count against queued batches
        self._threads = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    def usable_here(self) -> bool:
        """Whether the running event loop may use this hand-over (the one it is bound to, or
        any while unbound); an app served again on another loop needs one of its own."""
        return self.loop is None or self.loop is asyncio.get_running_loop()

    async def run(self, job: T) -> R:
        """``run_one(job)``'s result (or exception), computed on a worker thread."""
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((job, future))
        if self._running < self._concurrency:
            self._start()
        return await future

    def _start(self) -> None:
        batch, self._waiting = self._waiting, []
        self._running += 1
        with self._guard:
            self._jobs.put(batch)
            # Each running batch has a thread: an idle one only ends with the queue empty.
            if self._threads < self._running:
                self._threads += 1
                threading.Thread(target=self._work, name=self._name, daemon=True).start()

    def _work(self) -> None:
        loop = self.loop
        assert loop is not None
        while True:
            try:
                batch = self._jobs.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._guard:
                    if self._jobs.empty():
                        self._threads -= 1
                        return
                continue
            results: list[R | Exception]
            try:
                results = self._run(batch)
            except BaseException as exc:  # noqa: BLE001 - every job of the batch fails
                error = exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
                results = [error] * len(batch)
            # A closed loop (RuntimeError) has nobody waiting for these answers.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._finish, batch, results)

    def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> list[R | Exception]:
        if self._run_many is not None and len(batch) > 1:
            found: list[R | Exception]
            try:
                found = list(self._run_many([job for job, _ in batch]))
            except Exception:  # noqa: BLE001 - one by one below: each fails on its own
                found = []
            if len(found) == len(batch):
                return found
        out: list[R | Exception] = []
        for job, _ in batch:
            try:
                out.append(self._run_one(job))
            except Exception as exc:  # noqa: BLE001 - handed to that job's caller
                out.append(exc)
        return out

    def _finish(
        self, batch: list[tuple[T, asyncio.Future[R]]], results: list[R | Exception]
    ) -> None:
        self._running -= 1
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the caller went away and its task was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        if self._waiting and self._running < self._concurrency:
            self._start()
