"""Benchmark: profile updates and decisions with 100,000 profiles, on SQLite and on Redis.

Run from the repository root:  python bench/decisions.py [--profiles N] [--backend sqlite|redis]

Builds N profiles through ``DecisionEngine.update`` in batches of 100 events (about 4 events per
subject: a page, product views, some adds and orders over 2,000 products in 20 categories) and
reports the amortized cost per event, wall and CPU time of the whole process (so the background
flush thread counts), including the final ``flush()``, and the time spent inside ``update()``
calls alone (the request path). Event times are in the form the collector stores
(``2026-03-02T09:00:00.123Z``); the prepared events are frozen out of the garbage collector's
reach while timed (a collector holds one flush interval of events, not 400,000). The
ingest-like baseline is the CPU time of ``orjson.loads`` + ``orjson.dumps`` of the same
batches (a small part of what the collector's ingestion costs per event, which was 18-21 µs
in-process). Then times ``decide`` (segments, stage, next best action,
5 recommendations) for 2,000 random subjects, one call each, p50 and p99, and the same subjects
in ``decide_many`` batches of 8 (µs per subject). Before that, the cost
of deciding a subject with queued events (``bench_queued``): with its folded overlay extended
by the events queued since its last decision, against a re-fold of its whole queue. Baselines
measured in the same run: one SQLite transaction of 100 ``INSERT OR REPLACE`` of a 1 KB blob
(the floor of writing a profile per event), one primary-key SELECT, and one Redis GET round
trip. Redis runs
in a redis-server this script starts on a free 127.0.0.1 port (or ``--redis-url``).
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis

from journeykit.collector.decisions import DecisionEngine, DecisionSettings

BATCH = 100
DECISIONS = 2_000
MANY = 8  # subjects per decide_many
PRODUCTS = 2_000
CATEGORIES = 20
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp()


def _iso(ts: float) -> str:
    # The form the collector stores (collector/events.py), which the engine reads fastest.
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _events(subject: str, rng: random.Random) -> list[dict[str, Any]]:
    t = NOW - rng.uniform(0, 60) * 86400
    out: list[dict[str, Any]] = [
        {"type": "page", "userId": subject, "name": "Home", "timestamp": _iso(t)}
    ]
    for step in range(rng.randint(1, 3)):
        pid = rng.randrange(PRODUCTS)
        props = {"product_id": f"p{pid}", "category": f"c{pid % CATEGORIES}", "price": 25.0}
        ts = _iso(t + 60 * (step + 1))
        out.append({"type": "track", "userId": subject, "event": "Product Viewed",
                    "properties": props, "timestamp": ts})  # fmt: skip
        if rng.random() < 0.4:
            out.append({"type": "track", "userId": subject, "event": "Product Added",
                        "properties": {**props, "quantity": 1}, "timestamp": ts})  # fmt: skip
    if rng.random() < 0.2:
        lines = [{"product_id": f"p{rng.randrange(PRODUCTS)}", "price": 25.0} for _ in range(2)]
        out.append({"type": "track", "userId": subject, "event": "Order Completed",
                    "properties": {"order_id": f"o-{subject}", "total": rng.uniform(10, 400),
                                   "products": lines},
                    "timestamp": _iso(t + 600)})  # fmt: skip
    return out


def _batches(profiles: int) -> Iterator[list[dict[str, Any]]]:
    rng = random.Random(7)
    pending: list[dict[str, Any]] = []
    for n in range(profiles):
        pending.extend(_events(f"user-{n}", rng))
        while len(pending) >= BATCH:
            yield pending[:BATCH]
            del pending[:BATCH]
    if pending:
        yield pending


def _pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] if len(samples) > 1 else samples[0]


def ingest_like(profiles: int) -> float:
    """CPU µs per event of parsing and serializing the same batches with orjson."""
    raw = [orjson.dumps(b) for b in _batches(profiles)]
    events = sum(len(orjson.loads(r)) for r in raw)
    cpu = time.process_time()
    for r in raw:
        orjson.dumps(orjson.loads(r))
    return (time.process_time() - cpu) / events * 1e6


def bench_engine(engine: DecisionEngine, profiles: int) -> dict[str, float]:
    batches = list(_batches(profiles))
    events = sum(len(b) for b in batches)
    gc.collect()
    # The 400,000 prepared events are this script's fixture, not the engine's: a collector
    # holds a request's events for one flush interval. Left in the collected generations,
    # they made every full collection walk them (about 2x the CPU per event measured).
    gc.freeze()
    started, cpu, inside = time.perf_counter(), time.process_time(), 0.0
    for batch in batches:
        t0 = time.perf_counter()
        engine.update(batch)
        inside += time.perf_counter() - t0
    if not engine.flush():
        raise SystemExit(f"the final flush failed: {dict(engine.stats)}")
    update_us = (time.perf_counter() - started) / events * 1e6
    cpu_us = (time.process_time() - cpu) / events * 1e6
    t0 = time.perf_counter()
    engine.refresh_rfm()
    refresh_ms = (time.perf_counter() - t0) * 1e3
    rng = random.Random(11)
    subjects = [f"user-{rng.randrange(profiles)}" for _ in range(DECISIONS)]
    for s in subjects[:200]:  # warm caches and connections
        engine.decide(s, True)
    if not engine.available:
        raise SystemExit(f"the store failed: {dict(engine.stats)}")
    samples = []
    for s in subjects:
        t0 = time.perf_counter()
        engine.decide(s, True)
        samples.append((time.perf_counter() - t0) * 1e6)
    # The same subjects in batches, as GET /v1/decisions decides concurrent requests.
    t0 = time.perf_counter()
    for start in range(0, len(subjects), MANY):
        chunk = subjects[start : start + MANY]
        engine.decide_many(chunk, dict.fromkeys(chunk, True))
    many_us = (time.perf_counter() - t0) / len(subjects) * 1e6
    gc.unfreeze()
    return {
        "events": events,
        "update_us": update_us,
        "cpu_us": cpu_us,
        "call_us": inside / events * 1e6,
        "refresh_ms": refresh_ms,
        "p50": statistics.median(samples),
        "p99": _pct(samples, 99),
        "many_us": many_us,
    }


def bench_queued(tmp: Path, trials: int = 100, rounds: int = 10, own: int = 30) -> dict[str, float]:
    """µs per decision of a subject with queued events: with its overlay, and re-folded.

    Like the collector's inline decision: each batch of 100 events carries ``own`` events of
    one subject, and that subject is decided after each ``update`` (nothing flushed). Measured
    on rounds 2..``rounds`` (the overlay extended by ``own`` events, up to ``rounds * own``
    queued), against the same subject decided once by a second engine given the same batches
    (its first decision folds the whole queue: what every decision cost before overlays).
    """
    rng = random.Random(5)
    overlay: list[float] = []
    refold: list[float] = []
    for trial in range(trials):
        subject = f"hot-{trial}"
        batches = []
        for r in range(rounds):
            mine: list[dict[str, Any]] = []
            while len(mine) < own:
                mine.extend(_events(subject, rng))
            others: list[dict[str, Any]] = []
            while len(others) < BATCH - own:
                others.extend(_events(f"user-{trial}-{r}-{len(others)}", rng))
            batches.append(mine[:own] + others[: BATCH - own])
        settings = DecisionSettings(flush_interval_seconds=3600.0, flush_events=100_000)
        live = DecisionEngine.open(settings, tmp / f"live{trial}", clock=lambda: NOW)
        cold = DecisionEngine.open(settings, tmp / f"cold{trial}", clock=lambda: NOW)
        for r, batch in enumerate(batches):
            live.update(batch)
            cold.update(batch)
            t0 = time.perf_counter()
            live.decide(subject, True)
            if r:
                overlay.append((time.perf_counter() - t0) * 1e6)
        t0 = time.perf_counter()
        cold.decide(subject, True)
        refold.append((time.perf_counter() - t0) * 1e6)
        live.close()
        cold.close()
    return {
        "overlay_p50": statistics.median(overlay),
        "overlay_p99": _pct(overlay, 99),
        "refold_p50": statistics.median(refold),
        "refold_p99": _pct(refold, 99),
        "queued": rounds * own,
        "own": own,
    }


def sqlite_floor(tmp: Path) -> tuple[float, float]:
    """µs per row for 100-row blob upsert transactions, and µs per primary-key SELECT."""
    db = sqlite3.connect(tmp / "floor.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID")
    blob = b"x" * 1024
    rounds = 200
    t0 = time.perf_counter()
    for r in range(rounds):
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT OR REPLACE INTO t VALUES (?, ?)",
                       [(f"k{r * BATCH + i}", blob) for i in range(BATCH)])  # fmt: skip
        db.execute("COMMIT")
    write = (time.perf_counter() - t0) / (rounds * BATCH) * 1e6
    t0 = time.perf_counter()
    for i in range(DECISIONS):
        db.execute("SELECT v FROM t WHERE k = ?", (f"k{i}",)).fetchone()
    read = (time.perf_counter() - t0) / DECISIONS * 1e6
    db.close()
    return write, read


def redis_floor(url: str) -> float:
    client = redis.Redis.from_url(url)
    client.set("floor", b"x" * 1024)
    t0 = time.perf_counter()
    for _ in range(DECISIONS):
        client.get("floor")
    client.close()
    return (time.perf_counter() - t0) / DECISIONS * 1e6


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "redis", "both"], default="both")
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}, profiles {args.profiles:,}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        floor_write, floor_read = sqlite_floor(tmp)
        print(f"baseline sqlite: upsert {floor_write:.1f} µs/row, select {floor_read:.1f} µs")
        ingest_us = ingest_like(args.profiles)
        print(f"baseline ingest-like: orjson loads+dumps {ingest_us:.2f} µs CPU/event")
        q = bench_queued(tmp / "queued")
        print(
            f"decide with {q['own']:.0f} new of up to {q['queued']:.0f} queued events: "
            f"overlay p50 {q['overlay_p50']:.0f} µs p99 {q['overlay_p99']:.0f} µs; "
            f"re-fold of {q['queued']:.0f} p50 {q['refold_p50']:.0f} µs "
            f"p99 {q['refold_p99']:.0f} µs ({q['refold_p50'] / q['overlay_p50']:.1f}x)"
        )
        runs: dict[str, dict[str, float]] = {}
        if args.backend in ("sqlite", "both"):
            engine = DecisionEngine.open(DecisionSettings(), tmp / "data", clock=lambda: NOW)
            runs["sqlite"] = bench_engine(engine, args.profiles)
            engine.close()
        if args.backend in ("redis", "both"):
            with redis_server(tmp) if args.redis_url is None else _given(args.redis_url) as url:
                get_us = redis_floor(url)
                print(f"baseline redis: GET round trip {get_us:.1f} µs")
                settings = DecisionSettings(backend="redis", redis_url=url, redis_prefix="bench:")
                engine = DecisionEngine.open(settings, tmp, clock=lambda: NOW)
                runs["redis"] = bench_engine(engine, args.profiles)
                engine.close()
    for name, r in runs.items():
        base = floor_write if name == "sqlite" else get_us / BATCH
        print(
            f"{name}: {r['events']:,.0f} events, update {r['update_us']:.1f} µs/event "
            f"({r['update_us'] / base:.1f}x baseline), CPU {r['cpu_us']:.1f} µs/event "
            f"({r['cpu_us'] / ingest_us:.1f}x ingest-like), inside update() "
            f"{r['call_us']:.1f} µs/event, RFM refresh {r['refresh_ms']:.1f} ms, "
            f"decide p50 {r['p50']:.0f} µs p99 {r['p99']:.0f} µs, "
            f"decide_many of {MANY} {r['many_us']:.0f} µs per subject"
        )


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    main()
