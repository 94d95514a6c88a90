"""The collector's building blocks alone: body limits and timeout, dedup window, NDJSON sink."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import orjson
import pytest

from journeykit.collector.body import BodyError, inflate, read_limited
from journeykit.collector.dedup import Deduplicator
from journeykit.collector.sink import NdjsonSink


def test_inflate_caps_the_output() -> None:
    data = gzip.compress(b"x" * 10_000)
    assert inflate(data, "gzip", 10_000) == b"x" * 10_000
    with pytest.raises(BodyError) as caught:
        inflate(data, "gzip", 9_999)
    assert caught.value.status == 413
    assert inflate(b"plain", None, 10) == b"plain"


def test_inflate_reads_every_gzip_member() -> None:
    # `cat a.gz b.gz`, or a compressor starting a member per flush: one body, read whole.
    doc = b'{"batch":[{"type":"track"},{"type":"page"}]}'
    body = gzip.compress(doc[:20]) + gzip.compress(doc[20:]) + b"\0" * 8
    assert inflate(body, "gzip", 1_000) == doc
    assert inflate(gzip.compress(b"x" * 6) * 2, "gzip", 12) == b"x" * 12
    with pytest.raises(BodyError) as caught:
        inflate(gzip.compress(b"x" * 6) * 2, "gzip", 11)  # the limit holds across members
    assert caught.value.status == 413


@pytest.mark.parametrize(
    ("body", "encoding", "says"),
    [
        (gzip.compress(b"{}") + b"trailing", "gzip", "not valid gzip"),
        (gzip.compress(b"{}") + gzip.compress(b"{}")[:10], "gzip", "truncated"),
        (zlib.compress(b"{}") + b"more", "deflate", "data after its end"),
        (gzip.compress(b"") * 65, "gzip", "over 64 members"),
    ],
    ids=["garbage", "truncated member", "deflate", "members"],
)
def test_inflate_refuses_anything_after_the_data(body: bytes, encoding: str, says: str) -> None:
    with pytest.raises(BodyError) as caught:
        inflate(body, encoding, 1_000)
    assert (caught.value.status, caught.value.code) == (400, "bad_encoding")
    assert says in caught.value.message


def test_dedup_window_expires_and_memory_is_bounded() -> None:
    now = [0.0]
    dedup = Deduplicator(window=10, max_entries=3, clock=lambda: now[0])
    assert dedup.reserve(["a", "b", "a"]) == [True, True, False]
    dedup.commit(["a", "b"])
    assert dedup.reserve(["a"]) == [False]
    now[0] = 11
    assert dedup.reserve(["a"]) == [True]
    dedup.commit(["a", "c", "d", "e"])
    assert len(dedup) == 3


def test_dedup_release_forgets_a_failed_write() -> None:
    dedup = Deduplicator(window=10, max_entries=10)
    assert dedup.reserve(["a"]) == [True]
    dedup.release(["a"])
    assert dedup.reserve(["a"]) == [True]


def test_dedup_can_be_turned_off() -> None:
    dedup = Deduplicator(window=0, max_entries=10)
    dedup.commit(["a"])
    assert dedup.reserve(["a", "a"]) == [True, True]


def test_sink_partitions_by_hour_and_rotates(tmp_path: Path) -> None:
    sink = NdjsonSink(tmp_path, fsync="never", rotate_bytes=1_024)
    ten = datetime(2026, 11, 23, 10, 59, tzinfo=UTC)
    eleven = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    first = sink.write([b'{"n":1}'], ten)
    second = sink.write([b'{"n":2}'], eleven)
    assert first.parent == tmp_path / "dt=2026-11-23" / "hr=10"
    assert second.parent == tmp_path / "dt=2026-11-23" / "hr=11"
    for _ in range(40):
        sink.write([json.dumps({"pad": "x" * 40}).encode()], eleven)
    sink.close()
    assert len(list((tmp_path / "dt=2026-11-23" / "hr=11").glob("*.ndjson"))) > 1


def test_sink_lines_are_never_torn_under_concurrency(tmp_path: Path) -> None:
    sink = NdjsonSink(tmp_path, fsync="never")
    now = datetime.now(UTC)

    def writer(n: int) -> None:
        for i in range(200):
            sink.write([json.dumps({"w": n, "i": i, "pad": "y" * 300}).encode()] * 3, now)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    lines = [line for p in tmp_path.rglob("*.ndjson") for line in p.read_text().splitlines()]
    assert len(lines) == 4 * 200 * 3
    assert all(json.loads(line)["pad"] == "y" * 300 for line in lines)


def test_group_commit_shares_fsyncs_between_concurrent_batches(tmp_path: Path) -> None:
    sink = NdjsonSink(tmp_path, fsync="always")
    now = datetime.now(UTC)
    writes_per_thread, threads_count = 40, 8

    def writer(n: int) -> None:
        for i in range(writes_per_thread):
            path = sink.write([json.dumps({"w": n, "i": i}).encode()], now)
            assert path.exists()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    lines = [line for p in tmp_path.rglob("*.ndjson") for line in p.read_text().splitlines()]
    assert len(lines) == writes_per_thread * threads_count
    # Every write waited for an fsync, but concurrent writers shared them.
    assert 0 < sink.fsyncs < writes_per_thread * threads_count


def test_write_failure_raises_and_the_next_write_works(tmp_path: Path) -> None:
    sink = NdjsonSink(tmp_path / "events", fsync="always")
    (tmp_path / "events").write_text("a file where the directory should be")
    with pytest.raises(NotADirectoryError):  # the partition cannot be made under a file
        sink.write([b'{"n":1}'], datetime.now(UTC))
    (tmp_path / "events").unlink()
    path = sink.write([b'{"n":2}'], datetime.now(UTC))
    sink.close()
    assert path.read_bytes() == b'{"n":2}\n'


async def _trickle(first: bytes) -> AsyncIterator[bytes]:
    yield first
    await anyio.sleep_forever()  # a client that stops sending and keeps the connection


# asyncio takes asyncio's own deadline, any other loop anyio's cancel scope: both are held to it.
_LOOPS = ["asyncio", "trio"]


@pytest.mark.parametrize("backend", _LOOPS)
def test_a_body_that_stalls_ends_in_408(backend: str) -> None:
    async def read() -> bytes:
        return await read_limited(_trickle(b'{"batch": ['), None, 1_000, timeout=0.05)

    with pytest.raises(BodyError) as caught:
        anyio.run(read, backend=backend)
    assert (caught.value.status, caught.value.code) == (408, "request_timeout")


@pytest.mark.parametrize("backend", _LOOPS)
def test_a_body_within_the_timeout_is_read_whole(backend: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b'{"batch"', b": []}"):
            yield part

    async def read() -> bytes:
        return await read_limited(chunks(), "13", 1_000, timeout=30)

    assert anyio.run(read, backend=backend) == b'{"batch": []}'


def test_sink_escapes_what_other_readers_take_for_line_ends(tmp_path: Path) -> None:
    value = {"s": "a\u2028b\u2029c\x85d \u2019 \u201c\u00e9\n"}  # quotes and é stay raw
    sink = NdjsonSink(tmp_path, fsync="never")
    path = sink.write([orjson.dumps(value), orjson.dumps({"plain": 1})], datetime.now(UTC))
    sink.close()
    data = path.read_bytes()
    for raw in (b"\xe2\x80\xa8", b"\xe2\x80\xa9", b"\xc2\x85"):
        assert raw not in data
    assert b"\xe2\x80\x99" in data
    text = data.decode()
    assert len(text.splitlines()) == 2
    assert [json.loads(line) for line in text.splitlines()] == [value, {"plain": 1}]


def test_sink_reopens_its_file_after_an_erasure_replaced_it(tmp_path: Path) -> None:
    """What ``dsr erase`` does to a file a collector writes: copy, rename over, or remove."""
    sink = NdjsonSink(tmp_path, fsync="always")
    now = datetime.now(UTC)
    path = sink.write([b'{"n":1}', b'{"n":2}'], now)
    copy = path.with_name(".copy")
    copy.write_bytes(b'{"n":2}\n')  # "n":1 erased
    copy.replace(path)
    assert sink.write([b'{"n":3}'], now) == path
    assert path.read_bytes() == b'{"n":2}\n{"n":3}\n'
    path.unlink()
    assert sink.write([b'{"n":4}'], now) == path
    sink.close()
    assert path.read_bytes() == b'{"n":4}\n'
