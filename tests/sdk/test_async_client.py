"""AsyncClient under a real event loop (``asyncio.run``; no pytest plugin needed)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from helpers import Recorder, RunningCollector

from journeykit.sdk import AsyncClient, Drop

DELIVERY_ONLY: dict[str, Any] = {"consent_regime": "opt_out", "pseudonymize": False}


def make_client(handler: Any, **options: Any) -> AsyncClient:
    options.setdefault("max_backoff", 0.05)
    return AsyncClient("k", transport=httpx.MockTransport(handler), **DELIVERY_ONLY, **options)


def test_many_concurrent_tasks_deliver_every_event_once(collector: RunningCollector) -> None:
    async def user(client: AsyncClient, n: int) -> list[str]:
        ids = []
        for i in range(50):
            result = client.track(f"user-{n}", "Step", {"i": i})  # not awaited: plain call
            assert result, result
            assert result.message_id is not None
            ids.append(result.message_id)
            await asyncio.sleep(0)
        return ids

    async def main() -> tuple[list[list[str]], Any]:
        async with AsyncClient(
            collector.key, host=collector.url, max_queue_size=20_000, **DELIVERY_ONLY
        ) as client:
            ids = await asyncio.gather(*(user(client, n) for n in range(200)))
            assert await client.flush(timeout=60)
        return ids, client.stats()

    ids, stats = asyncio.run(main())
    sent = [m for task in ids for m in task]
    assert len(set(sent)) == 10_000
    assert (stats.queued, stats.sent, stats.pending, stats.dropped_total) == (10_000, 10_000, 0, 0)
    stored = [e["messageId"] for e in collector.events]
    assert sorted(stored) == sorted(sent)  # each stored once
    assert stats.requests >= 10  # batches of at most 1,000 (max_backlog_batch)


def test_calls_return_while_delivery_waits_and_flush_has_a_timeout() -> None:
    async def main() -> None:
        release = asyncio.Event()
        seen: list[httpx.Request] = []

        async def slow(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            await release.wait()
            return httpx.Response(200)

        async with make_client(slow, batch_size=5, max_backlog_batch=5) as client:
            results = [client.track("u1", "Step", {"i": i}) for i in range(20)]
            assert all(results)
            assert await client.flush(timeout=0.1) is False  # the first request hangs
            assert client.stats().pending == 20
            release.set()
            assert await client.flush(timeout=10)
            assert client.stats().sent == 20
            assert len(seen) == 4

    asyncio.run(main())


def test_retries_retry_after_and_give_ups_match_the_sync_client() -> None:
    recorder = Recorder(
        httpx.Response(503),
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(200),
        httpx.Response(400, text="bad"),
    )
    drops: list[Drop] = []

    async def main() -> Any:
        async with make_client(recorder, on_drop=drops.append) as client:
            client.track("u1", "First")
            assert await client.flush(timeout=10)
            client.track("u1", "Second")
            assert await client.flush(timeout=10)
        return client.stats()

    stats = asyncio.run(main())
    assert (stats.sent, stats.retries, stats.requests) == (1, 2, 4)
    assert stats.dropped == {"http_error": 1}
    assert [d.reason for d in drops] == ["http_error"]
    assert [e["event"] for e in recorder.events] == ["First"] * 3 + ["Second"]


def test_shutdown_timeout_drops_and_reports_what_is_left() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    drops: list[Drop] = []

    async def main() -> AsyncClient:
        client = make_client(hang, batch_size=1, on_drop=drops.append)
        for i in range(3):
            client.track("u1", "Step", {"i": i})
        assert await client.shutdown(timeout=0.2) is False
        assert await client.shutdown() is True  # idempotent
        refused = client.track("u1", "Late")
        assert not refused
        assert refused.reason == "shutdown"
        return client

    client = asyncio.run(main())
    stats = client.stats()
    assert stats.pending == 0
    assert stats.sent == 0
    assert stats.dropped == {"shutdown": 4}
    assert len(drops) == 4


def test_a_call_from_another_thread_that_overlaps_shutdown_is_refused_not_left_pending() -> None:
    """A call past the closed check when shutdown starts, and queued after it ended.

    The consent resolver holds the call between the two; its event must then be refused as
    ``shutdown`` (as the sync client does), not sit in a queue no task will ever deliver.
    """
    entered, go = threading.Event(), threading.Event()

    def resolver(user_id: str | None, anonymous_id: str | None) -> None:
        entered.set()
        go.wait(10)

    drops: list[Drop] = []
    client = make_client(Recorder(), consent_resolver=resolver, on_drop=drops.append)

    async def main() -> Any:
        call = asyncio.create_task(asyncio.to_thread(client.track, "u1", "Late"))
        await asyncio.to_thread(entered.wait, 10)
        assert await client.shutdown(timeout=1)
        go.set()
        return await call

    result = asyncio.run(main())
    assert not result
    assert result.reason == "shutdown"
    stats = client.stats()
    assert stats.pending == 0
    assert stats.dropped == {"shutdown": 1}
    assert [d.reason for d in drops] == ["shutdown"]


def test_events_left_when_the_loop_ends_are_dropped_and_counted() -> None:
    recorder = Recorder()
    client = make_client(recorder, flush_interval=60)

    async def main() -> None:
        for i in range(5):
            client.track("u1", "Step", {"i": i})  # lingering: the loop ends first

    asyncio.run(main())
    stats = client.stats()
    assert stats.dropped == {"shutdown": 5}
    assert stats.pending == 0
    assert recorder.requests == []


def test_calls_from_other_threads_wake_the_loop() -> None:
    recorder = Recorder()

    async def main() -> None:
        async with make_client(recorder, flush_interval=60, batch_size=40) as client:
            client.track("u1", "From the loop")  # binds the client to this loop

            def work(n: int) -> None:
                for i in range(20):
                    assert client.track(f"t{n}", "From a thread", {"i": i})

            threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                await asyncio.to_thread(thread.join)
            assert await client.flush(timeout=10)
            assert client.stats().sent == 81

    asyncio.run(main())
    assert len(recorder.events) == 81


def test_send_false_and_sync_mode() -> None:
    recorder = Recorder()

    async def main() -> None:
        async with make_client(recorder, send=False) as client:
            result = client.track("u1", "Step")
            assert not result
            assert result.reason == "not_sent"
            assert await client.flush(timeout=1)
            assert client.stats().not_sent == 1

    asyncio.run(main())
    assert recorder.requests == []
    with pytest.raises(ValueError, match="sync_mode"):
        make_client(recorder, sync_mode=True)


def test_a_retry_after_past_the_budget_holds_the_next_batches() -> None:
    drops: list[Drop] = []
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "60"}))

    async def main() -> None:
        client = make_client(recorder, retry_budget=1.0, on_drop=drops.append, max_backoff=0.05)
        client.track("u1", "First")
        assert await client.flush(timeout=5)
        client.track("u1", "Second")
        assert not await client.flush(timeout=0.5)
        assert not await client.shutdown(timeout=0.5)

    asyncio.run(main())
    assert len(recorder.requests) == 1
    assert [d.reason for d in drops] == ["retries_exhausted", "shutdown"]
    assert "asked to wait 60 s" in (drops[0].detail or "")


class SlowRecorder(Recorder):
    """A collector answering in 20 ms: with steady traffic, the queue is never empty."""

    async def answer(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)
        return self(request)


def test_flush_waits_for_what_was_tracked_before_it_not_after() -> None:
    recorder = SlowRecorder()

    async def main() -> None:
        client = make_client(recorder.answer, flush_interval=0.01)
        before = [client.track("u1", "Before").message_id for _ in range(10)]
        running = True

        async def produce() -> None:
            while running:
                client.track("u2", "After")
                await asyncio.sleep(0.001)

        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.05)
        try:
            assert await client.flush(timeout=5)
            assert set(before) <= {e["messageId"] for e in recorder.events}
        finally:
            running = False
            await producer
            await client.shutdown(timeout=5)

    asyncio.run(main())
