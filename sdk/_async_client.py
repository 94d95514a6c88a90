"""The asyncio client: the same calls, delivered from a task on the application's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

from journeykit.consent import Pseudonymizer
from journeykit.sdk._async_transport import AsyncSender
from journeykit.sdk._buffer import Item
from journeykit.sdk._calls import Enqueued, queued
from journeykit.sdk._consent import ConsentResolver
from journeykit.sdk._core import Core, Reporter, crashed, retry_pause, settle
from journeykit.sdk._decide import AsyncDecider
from journeykit.sdk._decision import Decision
from journeykit.sdk._fork import watch
from journeykit.sdk._settings import DEFAULT_HOST
from journeykit.sdk._spool import Spool
from journeykit.sdk._spool_async import replay_async
from journeykit.sdk._spool_policy import SPOOLABLE, Outage, store
from journeykit.sdk._stats import Drop, _Counters
from journeykit.sdk._transport import request_headers
from journeykit.sdk._worker import IN_FLIGHT

__all__ = ["AsyncClient"]

log = logging.getLogger("journeykit")

_IDLE_POLL = 1.0  # with a spool, how often an idle task looks for records to replay


class AsyncClient(Core):
    """:class:`~journeykit.sdk.Client` for asyncio applications.

    The calls (``track``, ``identify``, ``page``, ``screen``, ``group``, ``alias``,
    ``consent``) are plain methods, the same as the sync client's: they validate, gate,
    pseudonymize and queue on the caller's thread and return an :class:`Enqueued` without
    awaiting anything, so they never block the loop. A task on the running event loop, started
    by the first call made inside it, batches and sends with ``httpx.AsyncClient`` under the
    same retry rule. :meth:`flush` and :meth:`shutdown` are coroutines; use
    ``async with AsyncClient(...)`` or ``await client.shutdown()`` before the loop ends:
    events still queued when the loop stops are dropped with reason ``shutdown``, counted and
    reported. Calls may also come from other threads (the loop is woken thread-safely). One
    event loop at a time: after a loop ends, the next call inside another loop starts afresh.

    With ``spool_dir``, the spool works as in ``Client``, its file I/O in worker threads
    (``asyncio.to_thread``), never on the loop; records left by an earlier process are
    replayed once delivery starts (the first call, ``flush`` or ``async with``).

    Args are those of :class:`~journeykit.sdk.Client`, except that ``transport`` is an
    ``httpx.AsyncBaseTransport`` and ``sync_mode`` is refused.

    Raises:
        ValueError: ``sync_mode=True`` (use ``Client``).
    """

    def __init__(
        self,
        write_key: str,
        host: str = DEFAULT_HOST,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        on_drop: Callable[[Drop], None] | None = None,
        consent_resolver: ConsentResolver | None = None,
        pseudonymizer: Pseudonymizer | None = None,
        **options: Any,
    ) -> None:
        super().__init__(write_key, host, on_drop, consent_resolver, pseudonymizer, options)
        if self._settings.sync_mode:
            raise ValueError("sync_mode is for Client; AsyncClient delivers from an asyncio task")
        self._transport = transport
        s = self._settings
        self._spool = (
            None if s.spool_dir is None else Spool(s.spool_dir, s.spool_max_bytes, self._report)
        )
        self._fresh_delivery()
        watch(self)  # a forked child (a pre-fork server's worker) starts over: _after_fork

    def _fresh_delivery(self) -> None:
        """The queue, task and loop state of a client that has sent nothing yet."""
        self._lock = threading.Lock()  # guards the queue: calls may come from other threads
        self._items: deque[Item] = deque()
        self._bytes = 0
        self._unfinished = 0  # queued, not yet delivered or dropped
        self._accepted = 0
        self._flushers = 0
        self._stopping = False
        self._not_before = 0.0  # loop time a Retry-After asked the next request to wait
        self._sealed = False  # shutdown took the queue: calls that reach it later are refused
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._outage = Outage(self._settings)
        self._decider: tuple[asyncio.AbstractEventLoop, AsyncDecider] | None = None
        self._new_events()

    def _after_fork(self) -> None:
        """In a forked child: nothing queued, no task, loop or connection, counters at zero.

        The parent's queued events are the parent's to deliver: sent by each child as well,
        they would arrive once per worker. Its task and loop do not exist in the child.
        """
        self._counters = _Counters()
        self._report = Reporter(self._counters, self._on_drop)
        self._privacy.after_fork()
        if self._spool is not None:
            self._spool.forget_after_fork()
        self._decisions = self._new_decision_cache()
        self._fresh_delivery()

    # -- decisions ------------------------------------------------------------------------------

    async def decide(self, user_id: str, *, fresh: bool = False) -> Decision:
        """:meth:`Client.decide <journeykit.sdk.Client.decide>`, awaited on the running loop.

        ``decision_timeout`` bounds the whole request here. The connection pool is opened by
        the first call and belongs to its event loop (a call in another loop opens another).
        """
        found = self._decision_subject(user_id)
        if isinstance(found, Decision):
            return found
        loop = asyncio.get_running_loop()
        if self._decider is None or self._decider[0] is not loop:
            s = self._settings
            decider = AsyncDecider(
                s.host,
                request_headers(s),
                timeout=s.decision_timeout,
                cache=self._decisions,
                transport=self._transport,
            )
            self._decider = (loop, decider)  # one of another, finished loop is abandoned
        return await self._decider[1].decide(found, fresh=fresh)

    # -- lifecycle --------------------------------------------------------------------------

    async def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now and wait until it is delivered, spooled or dropped.

        Returns ``False`` if ``timeout`` seconds passed first; the events stay queued.
        """
        if self._pending() == 0:
            if self._spool is not None and not self._closed:
                self._start(asyncio.get_running_loop())  # replay what the spool holds
            return True
        self._start(asyncio.get_running_loop())
        # Only what was queued before this call: under steady traffic the queue is never
        # empty (the delivery task finishes events in the order they were queued).
        target = self._finished_target()
        self._flushers += 1
        self._ready.set()
        try:
            async with asyncio.timeout(timeout):
                while self._done_so_far() < target:
                    self._progress.clear()
                    await self._progress.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._flushers -= 1

    async def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop the delivery task and close connections. Idempotent.

        Whatever is still undelivered when ``timeout`` runs out is dropped with reason
        ``shutdown`` (counted and reported). Returns ``True`` when nothing was dropped so.
        """
        if self._closed:
            return True
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delivered = await self.flush(timeout)
        given_up = self._counters.dropped_for("shutdown")
        self._abort.set()  # a batch still retrying gives up now (and is spooled, with a spool)
        left = self._take_queued(seal=True)
        unstored = left
        if self._spool is not None and left:
            s = self._settings
            unstored = await asyncio.to_thread(
                store, self._spool, left, s.batch_size, s.events_bytes, self._counters
            )
        self._dispose(left, unstored, "still queued when shutdown gave up waiting")
        task = self._task
        if task is not None and not task.done():
            self._stopping = True
            self._wake.set()
            remaining = None if deadline is None else max(deadline - loop.time(), 0.05)
            done, _ = await asyncio.wait({task}, timeout=remaining)
            if not done:  # a request stuck past the deadline: its events are dropped
                task.cancel()
                await asyncio.wait({task})
        if self._decider is not None:
            owner, decider = self._decider
            self._decider = None
            if owner is loop:
                await decider.aclose()
        nothing_dropped = self._counters.dropped_for("shutdown") == given_up
        return (delivered or nothing_dropped) and self._pending() == 0

    async def __aenter__(self) -> AsyncClient:
        if self._spool is not None:
            await self.flush()  # starts delivery, which replays what the spool holds
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown(timeout=self._settings.timeout)

    # -- the calls' side ----------------------------------------------------------------------

    def _finished_target(self) -> int:
        with self._lock:
            return self._accepted

    def _done_so_far(self) -> int:
        """Events queued so far that were delivered, spooled or dropped."""
        with self._lock:
            return self._accepted - self._unfinished

    def _pending(self) -> int:
        with self._lock:
            return self._unfinished

    def _submit(self, message_id: str, payload: bytes) -> Enqueued:
        s = self._settings
        with self._lock:
            # A call from another thread can pass the closed check before shutdown and get
            # here after it: no task would ever deliver what it queued.
            sealed = self._sealed
            full = len(self._items) >= s.max_queue_size
            if not (full or sealed):
                self._items.append((message_id, payload))
                self._bytes += len(payload)
                self._unfinished += 1
                self._accepted += 1  # stats().queued, under the lock already held
        if sealed:
            self._drop(message_id, "shutdown", "the client was shut down")
            return Enqueued(False, message_id, "shutdown", "the client was shut down")
        if full:
            detail = f"the queue holds {s.max_queue_size:,} events"
            self._drop(message_id, "queue_full", detail)
            return Enqueued(False, message_id, "queue_full", detail)
        self._kick()
        return queued(message_id)

    def _queued(self) -> int:
        return self._accepted

    def _kick(self) -> None:
        """Wake the delivery task, starting it if this call runs inside an event loop."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and (self._task is None or self._task.done()):
            self._start(running)
        loop = self._loop
        if loop is None or self._task is None or self._task.done():
            return  # no loop yet: the first call or flush inside one starts delivery
        if loop is running:
            self._signal()
        else:
            # If that loop is closed, the next one to run a call or flush picks the events up.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._signal)

    def _signal(self) -> None:
        self._wake.set()
        if self._send_now():
            self._ready.set()

    def _send_now(self) -> bool:
        s = self._settings
        return (
            len(self._items) >= s.batch_size
            or self._bytes >= s.events_bytes
            or self._flushers > 0
            or self._stopping
        )

    # -- the delivery task --------------------------------------------------------------------

    def _new_events(self) -> None:
        # asyncio events belong to the loop that first waits on them: fresh ones per loop.
        self._wake = asyncio.Event()  # something queued, or stop
        self._ready = asyncio.Event()  # send now: a batch is full, or flush or stop asked
        self._progress = asyncio.Event()  # a batch was delivered or dropped
        self._abort = asyncio.Event()  # shutdown: stop retrying

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._task is not None and not self._task.done():
            if self._loop is not loop:
                raise RuntimeError("this AsyncClient is delivering on another running loop")
            return
        self._loop = loop
        self._new_events()
        if self._closed:
            self._abort.set()
        self._task = loop.create_task(self._run(), name="journeykit-delivery")

    async def _run(self) -> None:
        counters = self._counters
        s = self._settings
        sender = AsyncSender(
            s,
            self._transport,
            self._abort,
            on_retry=lambda: counters.add("retries"),
            on_request=lambda: counters.add("requests"),
            budget=min(s.retry_budget, s.spool_after) if self._spool is not None else None,
        )
        try:
            while True:
                if self._spool is not None:
                    stopping = lambda: self._stopping  # noqa: E731
                    await replay_async(
                        self._spool, sender.attempt, self._outage, counters, self._report, stopping
                    )
                left = self._not_before - asyncio.get_running_loop().time()
                if left > 0 and not self._stopping:
                    # A Retry-After longer than the last batch's budget: the next one waits.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop_requested(), left)
                batch = await self._take()
                if batch:
                    await self._deliver(sender, batch)
                elif self._stopping:
                    return
        finally:
            self._drop_queued("the event loop stopped before AsyncClient.shutdown()")
            await sender.aclose()

    async def _stop_requested(self) -> None:
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()

    async def _take(self) -> list[Item]:
        s = self._settings
        while not self._items and not self._stopping:
            self._wake.clear()
            if self._spool is None:
                await self._wake.wait()
                continue
            # With a spool, wake up to try the collector again, or to look for records.
            wait = self._outage.wait() if self._outage.active else _IDLE_POLL
            try:
                async with asyncio.timeout(max(wait, 0.01)):
                    await self._wake.wait()
            except TimeoutError:
                return []
        if not self._items:
            return []
        if not self._send_now():
            self._ready.clear()
            try:
                async with asyncio.timeout(s.flush_interval):
                    await self._ready.wait()
            except TimeoutError:
                pass
        batch: list[Item] = []
        size = 0
        with self._lock:
            limit = s.batch_size  # a backlog drains in fewer, larger requests
            if len(self._items) > limit:
                limit = max(limit, s.max_backlog_batch)
            while self._items and len(batch) < limit:
                nbytes = len(self._items[0][1]) + 1  # the comma that joins it
                if batch and size + nbytes > s.events_bytes:
                    break
                item = self._items.popleft()
                self._bytes -= len(item[1])
                size += nbytes
                batch.append(item)
        return batch

    async def _deliver(self, sender: AsyncSender, batch: list[Item]) -> None:
        try:
            spool = self._spool
            outage = spool is not None and self._outage.active
            if outage and spool is not None and await asyncio.to_thread(spool.write, batch):
                self._counters.add("spooled", len(batch))  # behind the older records
                return
            try:
                outcome = await sender.send([payload for _, payload in batch])
            except asyncio.CancelledError:
                # Shutdown's deadline or the loop's end: with a spool the batch is sent again
                # later (the collector drops the copy if this request got through), as the
                # sync client does; blocking file I/O, on this last path only.
                s = self._settings
                unstored = store(spool, batch, s.batch_size, s.events_bytes, self._counters)
                for message_id, _ in unstored:
                    self._drop(message_id, "shutdown", IN_FLIGHT)
                raise
            except Exception as exc:  # the task must outlive any one bad batch
                log.exception("journeykit: unexpected error delivering a batch")
                outcome = crashed(exc)
            if spool is not None and not outcome.delivered and outcome.failure in SPOOLABLE:
                if await asyncio.to_thread(spool.write, batch):
                    self._counters.add("spooled", len(batch))
                    self._outage.failed(outcome.retry_after)
                    return
                outcome.detail += "; the spool could not store it either (see the log)"
            wait = retry_pause(outcome)
            if wait is not None:
                self._not_before = asyncio.get_running_loop().time() + wait
            settle(batch, outcome, self._counters, self._report)
        finally:
            self._finished(len(batch))

    def _finished(self, n: int) -> None:
        with self._lock:
            self._unfinished -= n
        self._progress.set()

    def _drop_queued(self, detail: str) -> None:
        """Spool or drop what is still queued (the loop is ending: file I/O on it, briefly)."""
        left = self._take_queued()
        s = self._settings
        unstored = store(self._spool, left, s.batch_size, s.events_bytes, self._counters)
        self._dispose(left, unstored, detail)

    def _take_queued(self, *, seal: bool = False) -> list[Item]:
        with self._lock:
            self._sealed = self._sealed or seal
            left = list(self._items)
            self._items.clear()
            self._bytes = 0
        return left

    def _dispose(self, left: list[Item], unstored: list[Item], detail: str) -> None:
        # On the loop's thread: asyncio events are not thread-safe.
        for message_id, _ in unstored:
            self._drop(message_id, "shutdown", detail)
        if left:
            self._finished(len(left))
