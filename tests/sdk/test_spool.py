"""The durable spool: outages, restarts, the size bound, corrupt records, shared directories."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from helpers import Recorder

from journeykit.sdk import AsyncClient, Client, Drop
from journeykit.sdk._spool import Spool, decode_record
from journeykit.sdk.protocol import MAX_REQUEST_BYTES

# Delivery only (no consent state, no key), and short waits so that an outage is noticed fast.
FAST: dict[str, Any] = {
    "consent_regime": "opt_out",
    "pseudonymize": False,
    "max_retries": 1,
    "max_backoff": 0.05,
    "spool_after": 0.2,
    "flush_interval": 0.01,
    "batch_size": 10,
}


class Switch(Recorder):
    """A collector that refuses connections while ``down`` and records requests when up."""

    def __init__(self, down: bool = True, delay: float = 0.0) -> None:
        super().__init__()
        self.down = down
        self.delay = delay

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.delay:
            time.sleep(self.delay)
        return super().__call__(request)

    @property
    def ids(self) -> list[str]:
        return [event["messageId"] for event in self.events]


def _wait_until(condition: Any, seconds: float = 30.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass (a liveness bound, not a timing)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _records(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jks"))


def _client(collector: Switch, spool: Path, **options: Any) -> Client:
    return Client("k", transport=httpx.MockTransport(collector), spool_dir=spool, **FAST | options)


def _track(client: Client, chunks: int, size: int = 10, start: int = 0) -> list[str]:
    """Track ``chunks`` chunks of ``size`` events, flushing after each (one record each)."""
    ids: list[str] = []
    for c in range(chunks):
        for k in range(size):
            result = client.track("u1", "Tick", {"i": start + c * size + k})
            assert result.message_id is not None
            ids.append(result.message_id)
        assert client.flush(timeout=30)  # delivered or durably spooled
    return ids


def test_an_outage_is_spooled_and_replayed_in_order_when_the_collector_returns(
    tmp_path: Path,
) -> None:
    collector = Switch(down=True)
    with _client(collector, tmp_path) as client:
        during = _track(client, chunks=5)
        assert client.stats().spooled == 50
        assert len(_records(tmp_path)) == 5
        assert collector.events == []
        collector.down = False
        assert _wait_until(lambda: client.stats().replayed == 50)
        after = _track(client, chunks=2, start=50)
        stats = client.stats()
    assert collector.ids == during + after
    assert stats.sent == 20
    assert stats.dropped == {}
    assert stats.retries > 0
    assert _records(tmp_path) == []


def test_a_new_client_on_the_same_directory_replays_what_a_stopped_one_left(
    tmp_path: Path,
) -> None:
    down = Switch(down=True)
    first = _client(down, tmp_path)
    ids = _track(first, chunks=3)
    # Queued but never attempted: shutdown's deadline comes first, and they are spooled.
    ids += [first.track("u1", "Late", {"i": i}).message_id or "" for i in range(25)]
    assert first.shutdown(timeout=0.05)
    assert first.stats().spooled == 55
    assert first.stats().dropped == {}

    up = Switch(down=False)
    second = _client(up, tmp_path)  # no call needed: it finds the records and replays them
    try:
        assert _wait_until(lambda: second.stats().replayed == 55)
    finally:
        second.shutdown(timeout=5)
    assert up.ids == ids
    assert second.stats().queued == 0


def test_shutdown_spools_the_batch_of_a_request_that_outlives_it(tmp_path: Path) -> None:
    """A request hanging past shutdown's deadline: its batch is spooled first, then the rest,
    and a new client sends them all in order (a duplicate, if the first request got through,
    is the collector's to discard by messageId)."""
    gate = threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        gate.wait(10)
        return httpx.Response(200)

    first = Client(
        "k",
        transport=httpx.MockTransport(hang),
        spool_dir=tmp_path,
        **FAST | {"batch_size": 2, "max_backlog_batch": 2},
    )
    ids = [first.track("u1", "Tick", {"i": i}).message_id for i in range(6)]
    assert first.shutdown(timeout=0.3)  # nothing dropped: all of it is on disk
    gate.set()
    assert first.stats().spooled == 6
    assert first.stats().pending == 0

    up = Switch(down=False)
    second = _client(up, tmp_path)
    try:
        assert _wait_until(lambda: second.stats().replayed == 6)
    finally:
        second.shutdown(timeout=5)
    assert up.ids == ids


def test_the_size_bound_evicts_the_oldest_records_and_counts_them(tmp_path: Path) -> None:
    drops: list[Drop] = []
    collector = Switch(down=True)
    # About three records of ten events fit.
    client = _client(collector, tmp_path, spool_max_bytes=3 * 10 * 180, on_drop=drops.append)
    ids = _track(client, chunks=10)
    stats = client.stats()
    evicted = stats.dropped.get("spool_full", 0)
    assert 0 < evicted < 100
    assert [d.message_id for d in drops] == ids[:evicted]
    assert {d.reason for d in drops} == {"spool_full"}
    assert sum(p.stat().st_size for p in _records(tmp_path)) <= 3 * 10 * 180
    collector.down = False
    assert _wait_until(lambda: client.stats().replayed == 100 - evicted)
    client.shutdown(timeout=5)
    assert collector.ids == ids[evicted:]


def _spooled(spool_dir: Path) -> list[str]:
    """The ids of two batches a client stored in ``spool_dir`` while its collector was down."""
    first = _client(Switch(down=True), spool_dir)
    ids = _track(first, chunks=2)
    first.shutdown(timeout=1)
    return ids


def _replayer(spool_dir: Path) -> tuple[Client, Switch, list[Drop]]:
    """A client that replays ``spool_dir`` to a collector that is up, and its drops."""
    drops: list[Drop] = []
    up = Switch(down=False)
    return _client(up, spool_dir, on_drop=drops.append), up, drops


def test_corrupt_records_are_moved_aside_and_counted_and_the_rest_replayed(
    tmp_path: Path,
) -> None:
    ids = _spooled(tmp_path)
    good = _records(tmp_path)
    # A foreign file and a record whose body lost its last bytes (a damaged disk, not a crash:
    # the spool's own writes are atomic), both older than the good records.
    (tmp_path / "00000000000000000001-0000001-000000.jks").write_bytes(b"not a record")
    torn = good[0].read_bytes()[:-7]
    (tmp_path / "00000000000000000002-0000001-000000.jks").write_bytes(torn)

    second, up, drops = _replayer(tmp_path)
    assert _wait_until(lambda: second.stats().replayed == 20)
    second.shutdown(timeout=5)
    assert up.ids == ids
    assert second.stats().dropped == {"spool_corrupt": 2}
    assert [d.reason for d in drops] == ["spool_corrupt", "spool_corrupt"]
    assert len(list((tmp_path / "corrupt").iterdir())) == 2
    assert _records(tmp_path) == []


def test_a_record_that_cannot_be_read_is_moved_aside_and_the_rest_replayed(
    tmp_path: Path,
) -> None:
    # Reading fails (another user's 0600 record, a bad sector): here a directory, which opens
    # but cannot be read, whoever runs the test. It must not stop replay for good.
    ids = _spooled(tmp_path)
    (tmp_path / "00000000000000000001-0000001-000000.jks").mkdir()
    second, up, drops = _replayer(tmp_path)
    try:
        assert _wait_until(lambda: second.stats().replayed == 20)
        assert second.track("u1", "After").queued
        assert second.flush(timeout=10)
    finally:
        second.shutdown(timeout=5)
    assert up.ids[:20] == ids
    assert [d.reason for d in drops] == ["spool_corrupt"]
    assert "unreadable" in (drops[0].detail or "")
    assert _records(tmp_path) == []


def test_two_clients_on_one_directory_never_replay_a_record_twice(tmp_path: Path) -> None:
    ids = _track(_client(Switch(down=True), tmp_path, batch_size=5), chunks=40, size=5)
    assert len(_records(tmp_path)) == 40
    # Slow answers keep both replaying at the same time.
    a, b = Switch(down=False, delay=0.01), Switch(down=False, delay=0.01)
    left, right = _client(a, tmp_path), _client(b, tmp_path)
    try:
        assert _wait_until(lambda: left.stats().replayed + right.stats().replayed == 200)
    finally:
        left.shutdown(timeout=5)
        right.shutdown(timeout=5)
    delivered = a.ids + b.ids
    assert sorted(delivered) == sorted(ids)  # each exactly once
    assert a.ids
    assert b.ids
    assert a.ids == [i for i in ids if i in set(a.ids)]  # each in order


def test_a_claimed_record_is_invisible_to_other_spools_until_released(tmp_path: Path) -> None:
    reports: list[tuple[str | None, str, str]] = []
    one = Spool(tmp_path, 10**6, lambda *r: reports.append(r))
    two = Spool(tmp_path, 10**6, lambda *r: reports.append(r))
    one.write([("m1", b'{"messageId":"m1"}')])
    one.write([("m2", b'{"messageId":"m2"}')])
    first = one.claim()
    assert first is not None
    assert first.items[0][0] == "m1"
    second = two.claim()
    assert second is not None
    assert second.items[0][0] == "m2"
    assert one.claim() is None
    assert two.claim() is None
    two.release(second)
    one.done(first)
    again = two.claim()
    assert again is not None
    assert again.items[0][0] == "m2"
    assert reports == []


def test_final_refusals_are_dropped_not_spooled(tmp_path: Path) -> None:
    collector = Recorder(httpx.Response(400, json={"ok": False}))
    client = Client("k", transport=httpx.MockTransport(collector), spool_dir=tmp_path, **FAST)
    _track(client, chunks=1)
    client.shutdown(timeout=5)
    assert client.stats().dropped == {"http_error": 10}
    assert client.stats().spooled == 0
    assert _records(tmp_path) == []


def test_sync_mode_spools_failures_and_flush_replays_them(tmp_path: Path) -> None:
    collector = Switch(down=True)
    client = _client(collector, tmp_path, sync_mode=True)
    results = [client.track("u1", "Tick", {"i": i}) for i in range(3)]
    assert all(results)
    assert not any(r.delivered for r in results)
    assert client.stats().spooled == 3
    collector.down = False
    assert client.flush(timeout=10)
    assert collector.ids == [r.message_id for r in results]
    assert client.stats().replayed == 3
    client.shutdown()


def test_records_on_disk_are_whole(tmp_path: Path) -> None:
    client = _client(Switch(down=True), tmp_path)
    ids = _track(client, chunks=3)
    client.shutdown(timeout=1)
    read = [mid for path in _records(tmp_path) for mid, _ in decode_record(path.read_bytes())]
    assert read == ids
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("threads", [4])
def test_concurrent_trackers_during_an_outage_lose_nothing(tmp_path: Path, threads: int) -> None:
    collector = Switch(down=True)
    client = _client(collector, tmp_path)
    ids: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(250):
            mid = client.track(f"u{n}", "Tick", {"i": i}).message_id
            with lock:
                ids.append(mid or "")

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert client.flush(timeout=30)
    collector.down = False
    assert _wait_until(lambda: client.stats().replayed == len(ids))
    client.shutdown(timeout=5)
    assert sorted(collector.ids) == sorted(ids)
    assert client.stats().dropped == {}


# -- AsyncClient: the same outcomes, file I/O off the loop -----------------------------------


def _async_client(collector: Switch, spool: Path, **options: Any) -> AsyncClient:
    transport = httpx.MockTransport(collector)
    return AsyncClient("k", transport=transport, spool_dir=spool, **FAST | options)


async def _until(condition: Any, seconds: float = 30.0) -> bool:
    """Poll ``condition`` on the loop until it holds (a liveness bound, not a timing)."""
    try:
        async with asyncio.timeout(seconds):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        return False
    return True


def test_async_client_spools_an_outage_and_replays_it_in_order(tmp_path: Path) -> None:
    collector = Switch(down=True)

    async def main() -> tuple[list[str], Any]:
        ids: list[str] = []
        async with _async_client(collector, tmp_path) as client:
            for chunk in range(5):
                ids += [
                    client.track("u1", "Tick", {"i": chunk * 10 + k}).message_id or ""
                    for k in range(10)
                ]
                assert await client.flush(timeout=30)
            assert client.stats().spooled == 50
            assert collector.events == []
            collector.down = False
            assert await _until(lambda: client.stats().replayed == 50)
            ids += [client.track("u1", "Tick", {"i": 50 + k}).message_id or "" for k in range(10)]
            assert await client.flush(timeout=30)
            return ids, client.stats()

    ids, stats = asyncio.run(main())
    assert collector.ids == ids
    assert stats.sent == 10
    assert stats.dropped == {}
    assert list(tmp_path.glob("*.jks")) == []


class Sizes(Switch):
    """A collector that refuses a request body over its limit (413), as the real one does."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        size = len(gzip.decompress(request.content))
        if size > MAX_REQUEST_BYTES:
            return httpx.Response(413, json={"ok": False, "error": {"code": "payload_too_large"}})
        return super().__call__(request)


def test_what_shutdown_spools_fits_in_one_request_per_record(tmp_path: Path) -> None:
    # 500 events of 1.3 KB would be 700 KB in one record: refused whole (413) when replayed.
    big = {"note": "x" * 1_300}
    first = _client(Switch(down=True), tmp_path, batch_size=500, flush_interval=60)
    ids = [first.track("u1", "Cart Viewed", {**big, "i": i}).message_id or "" for i in range(1500)]
    assert first.shutdown(timeout=0.05)
    assert first.stats().spooled == 1500
    up = Sizes(down=False)
    second = _client(up, tmp_path, batch_size=500)
    try:
        assert _wait_until(lambda: second.stats().replayed == 1500)
    finally:
        second.shutdown(timeout=5)
    assert second.stats().dropped == {}
    assert up.ids == ids


def test_a_batch_of_max_batch_bytes_fits_the_collectors_limit(tmp_path: Path) -> None:
    # The largest setting allowed: the envelope around the events must fit in it too. Events
    # of 1,279 bytes (1,280 with their comma) fill 512,000 bytes exactly, 400 of them.
    probe = Switch(down=False)
    with _client(probe, tmp_path / "probe") as measuring:
        measuring.track("u1", "Cart Viewed", {"note": "", "i": "0000"})
    empty = len(orjson.dumps(probe.events[0]))
    note = "x" * (1_279 - empty)
    up = Sizes(down=False)
    client = _client(up, tmp_path, batch_size=500, max_batch_bytes=MAX_REQUEST_BYTES)
    try:
        for i in range(400):
            client.track("u1", "Cart Viewed", {"note": note, "i": f"{i:04d}"})
        assert client.flush(timeout=10)
    finally:
        client.shutdown(timeout=5)
    assert len(orjson.dumps(up.events[0])) == 1_279
    assert (client.stats().sent, client.stats().dropped) == (400, {})


def test_async_shutdown_spools_what_is_left_and_a_new_client_replays_it(tmp_path: Path) -> None:
    down, up = Switch(down=True), Switch(down=False)

    async def first() -> list[str]:
        # The events linger in memory (long flush interval); shutdown's deadline comes first.
        client = _async_client(down, tmp_path, flush_interval=60, batch_size=100)
        ids = [client.track("u1", "Tick", {"i": i}).message_id or "" for i in range(30)]
        assert await client.shutdown(timeout=0.05)
        assert client.stats().spooled == 30
        assert client.stats().dropped == {}
        return ids

    async def second() -> int:
        async with _async_client(up, tmp_path) as client:  # finds the records and replays them
            assert await _until(lambda: client.stats().replayed == 30)
            return client.stats().queued

    ids = asyncio.run(first())
    assert asyncio.run(second()) == 0
    assert up.ids == ids


def test_async_shutdown_spools_the_batch_of_a_request_that_outlives_it(tmp_path: Path) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(200)

    async def first() -> list[str]:
        client = AsyncClient("k", transport=httpx.MockTransport(hang), spool_dir=tmp_path, **FAST)
        ids = [client.track("u1", "Tick", {"i": i}).message_id or "" for i in range(5)]
        await asyncio.sleep(0.1)  # the batch is in its request
        await client.shutdown(timeout=0.3)
        assert (client.stats().spooled, client.stats().dropped) == (5, {})
        return ids

    async def second() -> None:
        async with _async_client(up, tmp_path) as client:
            assert await _until(lambda: client.stats().replayed == 5)

    up = Switch(down=False)
    ids = asyncio.run(first())
    asyncio.run(second())
    assert up.ids == ids
