"""Benchmark: SDK delivery throughput to a local null sink, and memory per queued event.

Run from the repository root:  python bench/sdk_delivery.py [--events N] [--rounds R]

The sink (``bench/_sdk_sink.py``) runs in its own process on 127.0.0.1: it reads each body and
answers 200. Measured in the same run, rounds taking turns (this VM's speed drifts):

- baseline: a bare ``httpx.Client`` loop posting pre-built gzip bodies of 100 events, the
  floor any Python HTTP client pays;
- delivery: one client's delivery path, queue -> worker thread -> ``Sender`` (request body,
  gzip, POST, retry wrapper, answer parsed) -> sink, draining a queue pre-filled with N
  encoded events at the default settings (``batch_size=100``; a backlog drains in requests of
  up to ``max_backlog_batch=1000``): what the worker sustains, which ``track()`` cost does not
  limit; also without coalescing (``max_backlog_batch=100``: every request 100 events, the
  per-request cost of a Python HTTP client dominates) and with ``batch_size=500``;
- client: ``Client.track`` of N events on the caller's thread while the worker delivers, until
  ``flush()`` returns: what an application sees (untyped track, consent regime opt-out,
  pseudonymization off); bounded by the caller's ``track()`` cost, printed beside it.

Memory: with the sink unreachable (nothing listens on the port; the worker keeps retrying its
first batch), the tracemalloc delta of 10,000 queued events, per event.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
from _sdk_sink import free_port, running

from journeykit.sdk import Client
from journeykit.sdk._buffer import Buffer
from journeykit.sdk._core import Reporter
from journeykit.sdk._message import encode
from journeykit.sdk._settings import ClientSettings
from journeykit.sdk._stats import _Counters
from journeykit.sdk._transport import Sender, encode_batch, request_headers
from journeykit.sdk._worker import Worker

KEY = "bench-write-key"
PROPS = {"product_id": "p-1", "name": "Trail Runner", "price": 119.0, "currency": "EUR"}
OPTIONS = {"consent_regime": "opt_out", "pseudonymize": False}


@contextmanager
def sink(*args: str) -> Iterator[str]:
    """The null sink in a child process; yields its URL."""
    with running(free_port(), *args) as url:
        yield url


def _payloads(n: int) -> list[bytes]:
    return [
        encode(
            {
                "type": "track",
                "messageId": f"{i:08d}-0000-4000-8000-000000000000",
                "timestamp": "2025-02-01T12:00:00.000Z",
                "userId": "user-42",
                "event": "Product Viewed",
                "properties": PROPS,
                "context": {"library": {"name": "journeykit-python", "version": "0"}},
            }
        )
        for i in range(n)
    ]


def baseline(url: str, payloads: list[bytes]) -> float:
    settings = ClientSettings(write_key=KEY, host=url)  # type: ignore[arg-type]
    bodies = [encode_batch(payloads[i : i + 100], True) for i in range(0, len(payloads), 100)]
    with httpx.Client(base_url=url, headers=request_headers(settings)) as http:
        begin = time.perf_counter()
        for body, headers in bodies:
            http.post("/v1/batch", content=body, headers=headers).raise_for_status()
        return len(payloads) / (time.perf_counter() - begin)


def delivery(url: str, payloads: list[bytes], **options: int) -> float:
    settings = ClientSettings(
        write_key=KEY,  # type: ignore[arg-type]
        host=url,
        max_queue_size=len(payloads),
        **options,
    )
    buffer = Buffer(settings.max_queue_size)
    for i, payload in enumerate(payloads):
        buffer.put((str(i), payload))
    counters = _Counters()
    sender = Sender(settings, None, threading.Event(), lambda: None, lambda: None)
    worker = Worker(settings, buffer, sender, counters, Reporter(counters, None))
    begin = time.perf_counter()
    worker.start()
    assert buffer.join(120)
    rate = len(payloads) / (time.perf_counter() - begin)
    worker.stop(10)
    assert counters.sent == len(payloads)
    return rate


def track_cost(n: int = 20_000) -> float:
    """Microseconds per ``track()`` on the caller's thread, send=False (no delivery)."""
    with Client(KEY, send=False, **OPTIONS) as c:  # type: ignore[arg-type]
        begin = time.perf_counter()
        for _ in range(n):
            c.track("user-42", "Product Viewed", PROPS)
        return (time.perf_counter() - begin) / n * 1e6


def client(url: str, n: int) -> float:
    with Client(KEY, host=url, max_queue_size=n, **OPTIONS) as c:
        begin = time.perf_counter()
        for _ in range(n):
            c.track("user-42", "Product Viewed", PROPS)
        assert c.flush(timeout=120)
        rate = n / (time.perf_counter() - begin)
        stats = c.stats()
        assert stats.sent == n, stats
        return rate


def memory_per_event(n: int = 10_000) -> float:
    unreachable = f"http://127.0.0.1:{free_port()}"
    c = Client(
        KEY,
        host=unreachable,
        max_queue_size=n,
        max_retries=1_000,
        retry_budget=3_600,
        **OPTIONS,  # type: ignore[arg-type]
    )
    c.track("user-42", "Warm Up", PROPS)  # the worker, its thread and connection pool
    time.sleep(0.2)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        c.track("user-42", "Product Viewed", {**PROPS, "position": i})
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert c.stats().pending == n + 1
    c.shutdown(timeout=0.1)
    return (after - before) / n


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("journeykit").addHandler(logging.NullHandler())  # the memory run's drops
    logging.getLogger("journeykit").propagate = False
    payloads = _payloads(args.events)
    cases: dict[str, Callable[[str], float]] = {
        "baseline (bare httpx posts)": lambda url: baseline(url, payloads),
        "delivery (queue+worker+sender)": lambda url: delivery(url, payloads),
        "delivery, no coalescing": lambda url: delivery(url, payloads, max_backlog_batch=100),
        "delivery, batch_size=500": lambda url: delivery(url, payloads, batch_size=500),
        "client (track + deliver)": lambda url: client(url, args.events),
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    with sink() as url:
        for _ in range(args.rounds):
            for name, case in cases.items():
                rates[name].append(case(url))
    per_event = memory_per_event()
    per_track = track_cost()

    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, {args.events:,} events")
    base = statistics.median(rates["baseline (bare httpx posts)"])
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:30} {median:>10,.0f} events/s  ({median / base:.2f} x baseline)")
    delivered = statistics.median(rates["delivery (queue+worker+sender)"])
    verdict = "met" if delivered >= 50_000 else "MISSED"
    print(f"delivery target >= 50,000 events/s at default settings: {verdict}")
    print(f"track() alone (send=False): {per_track:,.1f} us/call = {1e6 / per_track:,.0f} calls/s")
    print(f"memory per queued event: {per_event:,.0f} B (target <= 1,024 B)")


if __name__ == "__main__":
    main()
