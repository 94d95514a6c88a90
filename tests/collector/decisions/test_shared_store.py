"""Several engines on one store (as several collector processes), outages, the Redis dedup."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from decisions_helpers import (
    DAY,
    HOUR,
    Clock,
    EngineFactory,
    add,
    consent,
    order,
    start_redis,
    stop,
    view,
)
from helpers import free_port

from journeykit.collector.decisions import DecisionEngine, DecisionSettings
from journeykit.collector.decisions._redis_dedup import RedisDeduplicator


def _traffic(clock: Clock) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for i in range(30):
        s = f"u{i}"
        t = clock.now - (i % 7) * DAY - HOUR * 3
        events += [consent(s, t - DAY, True), view(s, f"p{i % 5}", t), view(s, f"p{i % 3}", t + 60)]
        if i % 2:
            events.append(add(s, f"p{i % 4}", t + 120))
        if i % 3 == 0:
            events.append(order(s, t - i * DAY, 20.0 * (i + 1), [f"p{i % 6}"]))
    return events


def test_two_engines_on_one_store_give_identical_decisions(
    make_engine: EngineFactory, clock: Clock
) -> None:
    first, second = make_engine(), make_engine()
    events = _traffic(clock)
    for start in range(0, len(events), 10):  # requests land on either worker
        (first if start % 20 else second).update(events[start : start + 10])
    # Each sees the other's events once they are written (within flush_interval_seconds).
    first.flush()
    second.flush()
    subjects = [f"u{i}" for i in range(30)]
    a, b = first.decide_many(subjects), second.decide_many(subjects)
    assert a == b
    assert {d.personalization for d in a.values()} == {"granted"}
    assert len({tuple(d.segments) for d in a.values()}) > 3  # the traffic is not all alike


def test_concurrent_writers_lose_no_event(make_engine: EngineFactory, clock: Clock) -> None:
    engines = [make_engine(), make_engine()]
    per_thread = 40

    def work(engine: DecisionEngine, offset: int) -> None:
        for i in range(per_thread):
            engine.update([view("shared", f"p{offset}-{i}", clock.now - HOUR)])

    threads = [threading.Thread(target=work, args=(e, n)) for n, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for engine in engines:
        engine.flush()
    fresh = make_engine()
    d = fresh.decide("shared", personalization_granted=True)
    assert "stage:consideration" in d.rules_fired
    store_doc = fresh._store.fetch(["shared"])["shared"]
    assert store_doc["views"] == 2 * per_thread


@pytest.fixture
def own_redis(redis_url: str) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A second redis-server that this test may stop and start again on the same port."""
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    yield port, procs
    for proc in procs:
        stop(proc)


def _start(port: int, procs: list[subprocess.Popen[bytes]], workdir: Path) -> None:
    binary = shutil.which("redis-server")
    assert binary is not None  # the redis_url fixture failed the test otherwise
    procs.append(start_redis(binary, port, workdir))


def test_redis_outage_keeps_queued_events_and_makes_decisions_unavailable(
    own_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path, clock: Clock
) -> None:
    port, procs = own_redis
    _start(port, procs, tmp_path)
    settings = DecisionSettings(
        backend="redis",
        redis_url=f"redis://127.0.0.1:{port}/0",
        retry_unavailable_seconds=0,
        flush_interval_seconds=3600,
        pending_limit=3,
    )
    engine = DecisionEngine.open(settings, tmp_path, clock=clock)
    try:
        assert engine.update([order("u", clock.now - DAY, 700.0, ["p"])]).applied == 1
        assert engine.flush()
        assert "value_elite" in engine.decide("u", personalization_granted=True).segments
        procs[0].terminate()
        procs[0].wait(timeout=10)
        assert engine.update([view("u", "q1", clock.now)]).applied == 1  # queued
        assert not engine.flush()
        assert engine.pending == 1  # kept for the next attempt
        down = engine.decide("u", personalization_granted=True)
        assert down.personalization == "unavailable"
        assert down.segments == []
        assert engine.stats["store_errors"] >= 2
        assert engine.stats["flush_errors"] == 1
        # The queue is bounded while the store is down; what does not fit is counted.
        result = engine.update([view("u", f"q{i}", clock.now) for i in range(2, 5)])
        assert (result.applied, result.skipped) == (2, {"store_unavailable": 1})
        assert engine.stats["events_skipped_store_unavailable"] == 1
        _start(port, procs, tmp_path)  # an empty server: state kept only in memory is gone
        assert engine.flush()
        assert engine.pending == 0
        back = engine.decide("u", personalization_granted=True)
        assert back.personalization == "granted"
        assert "value_elite" not in back.segments
        assert engine._store.fetch(["u"])["u"]["views"] == 3  # the queued views survived
    finally:
        engine.close()


def test_redis_dedup_is_shared_between_workers(redis_url: str) -> None:
    a = RedisDeduplicator.from_url(redis_url, window=3600, prefix="dedup1:")
    b = RedisDeduplicator.from_url(redis_url, window=3600, prefix="dedup1:")
    try:
        assert a.reserve(["m1", "m2", "m1"]) == [True, True, False]
        assert b.reserve(["m1", "m3"]) == [False, True]  # m1 is pending on the other worker
        a.commit(["m1"])
        a.release(["m2"])
        b.release(["m3"])
        assert b.reserve(["m1", "m2", "m3"]) == [False, True, True]
        b.commit(["m2", "m3"])
        a.release(["m2"])  # releasing a committed id does not forget it
        assert a.reserve(["m2"]) == [False]
        ttl = redis.Redis.from_url(redis_url).pttl("dedup1:d:m2")
        assert 3_500_000 < ttl <= 3_600_000
    finally:
        a.close()
        b.close()


def test_redis_dedup_tells_pending_from_lost(redis_url: str) -> None:
    a = RedisDeduplicator.from_url(redis_url, window=3600, prefix="dedup3:")
    b = RedisDeduplicator.from_url(redis_url, window=3600, prefix="dedup3:")
    try:
        assert a.reserve(["m1", "m2", "m3"]) == [True] * 3
        assert b.reserve(["m1", "m2", "m3"]) == [False] * 3
        assert b.pending(["m1", "m2", "m3"]) == ["m1", "m2", "m3"]
        a.commit(["m1"])
        a.release(["m2"])  # its write failed
        assert (b.pending(["m1", "m2", "m3"]), b.lost(["m1", "m2", "m3"])) == (["m3"], ["m2"])
    finally:
        a.close()
        b.close()
    dead = RedisDeduplicator.from_url(f"redis://127.0.0.1:{free_port()}/0", window=60)
    try:
        assert dead.reserve(["m1", "m2"]) == [True, True]
        dead.release(["m2"])
        assert (dead.pending(["m1", "m2"]), dead.lost(["m1", "m2"])) == (["m1"], ["m2"])
    finally:
        dead.close()


def test_redis_dedup_falls_back_to_the_worker_when_redis_is_down() -> None:
    dead = RedisDeduplicator.from_url(f"redis://127.0.0.1:{free_port()}/0", window=60)
    try:
        assert dead.reserve(["m1"]) == [True]
        dead.commit(["m1"])
        assert dead.reserve(["m1"]) == [False]
        assert dead.fallbacks == 3
        assert len(dead) == 1
    finally:
        dead.close()


def test_redis_dedup_window_zero_turns_it_off(redis_url: str) -> None:
    off = RedisDeduplicator.from_url(redis_url, window=0, prefix="dedup2:")
    try:
        off.commit(["m"])
        assert off.reserve(["m", "m"]) == [True, True]
    finally:
        off.close()


class _SlowReplyProxy:
    """A TCP proxy to Redis that holds the reply to one MULTI/EXEC longer than the client waits.

    The transaction runs; only its answer is late (a latency spike), which redis-py reports
    as a WatchError, as it reports a write conflict.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.hold_next_exec = False
        self._armed = False
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.sock.accept()
                server = socket.create_connection(("127.0.0.1", self.target))
                for a, b, reply in ((client, server, False), (server, client, True)):
                    threading.Thread(target=self._pipe, args=(a, b, reply), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket, reply: bool) -> None:
        try:
            while data := a.recv(65536):
                if not reply and self.hold_next_exec and b"EXEC" in data:
                    self.hold_next_exec, self._armed = False, True
                if reply and self._armed:
                    self._armed = False
                    time.sleep(0.8)  # past redis_timeout_seconds (0.5)
                b.sendall(data)
        except OSError:
            pass
        finally:
            a.close()
            b.close()


def test_a_write_whose_reply_is_lost_is_not_applied_twice(
    redis_url: str, tmp_path: Path, clock: Clock
) -> None:
    proxy = _SlowReplyProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    settings = DecisionSettings(
        backend="redis",
        redis_url=f"redis://127.0.0.1:{proxy.port}/0",
        redis_prefix="lost-reply:",
        flush_interval_seconds=3600,
        stats_flush_seconds=3600,
    )
    engine = DecisionEngine.open(settings, tmp_path, clock=clock)
    try:
        engine.update([order("carl", clock.now - HOUR, 80.0, ["p1"])])
        engine.decide("carl", personalization_granted=True)  # the connection is warm
        proxy.hold_next_exec = True
        assert engine.flush()
        profile = engine.profile("carl")
        assert profile is not None
        assert (profile["orders"], profile["rev"]) == (1, {"USD": 80.0})
    finally:
        engine.close()
        proxy.sock.close()
