"""The collector's building blocks alone: body limits, dedup window, NDJSON sink."""

from __future__ import annotations

import gzip
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from journeykit.collector.body import BodyError, inflate
from journeykit.collector.dedup import Deduplicator
from journeykit.collector.sink import NdjsonSink


def test_inflate_caps_the_output() -> None:
    data = gzip.compress(b"x" * 10_000)
    assert inflate(data, "gzip", 10_000) == b"x" * 10_000
    with pytest.raises(BodyError) as caught:
        inflate(data, "gzip", 9_999)
    assert caught.value.status == 413
    assert inflate(b"plain", None, 10) == b"plain"


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
