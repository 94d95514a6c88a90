"""Benchmark: the caller's cost of one SDK track(), against segment-analytics-python's.

Run from the repository root, in a venv that also has Segment's client (never a dependency of
journeykit; install it in the benchmark environment only)::

    python3 -m venv /tmp/vbench
    /tmp/vbench/bin/pip install -e . segment-analytics-python
    /tmp/vbench/bin/python bench/sdk_track.py [--iterations N] [--rounds R]

Without it the script says how to install it and prints journeykit's figures only.

Measured in the same run (this VM's speed drifts by 2x over minutes), as medians and p90 per
call: the time of one ``track`` on the caller's thread, up to and including putting the event
on the queue. Cases:

- segment plain: ``segment.analytics.Client.track(user_id, "Product Viewed", {...})``, the
  baseline. Its full call path: ``send=True`` (``send=False`` would skip the queue put),
  ``thread=0`` so that no consumer thread competes for the GIL, and a queue large enough that
  nothing is refused; the queue is emptied between samples, untimed.
- ours plain: the same untyped track; consent regime opt-out with no state (the gate cannot be
  switched off), pseudonymization off.
- ours private: the untyped track for a subject who granted analytics, with an email
  pseudonymized (a new email each call, so an HMAC is computed every time).
- ours typed + gate + HMAC: the target case: a typed event model built in the timed call,
  gated and its email pseudonymized (a new email each call).
- ours typed, class + dict: the client validates the properties itself.

For our client the worker does not send during a sample: events linger (``flush_interval`` is a
day) and are flushed between samples, untimed, through an ``httpx.MockTransport``. Each sample
times a batch of calls and divides; the cases take turns over several rounds.

Memory per queued event: ``tracemalloc`` around 10,000 typed, gated, pseudonymized events
queued to a collector that never answers (the first batch hangs in the transport, the rest
wait in the queue); Segment's figure is measured the same way for its queue of dicts.
"""

from __future__ import annotations

import argparse
import gc
import logging
import platform
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import httpx

from journeykit.sdk import Client
from journeykit.sdk.events import ProductViewed

try:
    from segment.analytics import Client as SegmentClient
except ImportError:  # not a dependency: the benchmark environment installs it
    SegmentClient = None

BATCH = 100
KEY = "bench-key-0123456789abcdef-not-real"
PROPS = {"product_id": "p-1", "name": "Trail Runner", "price": 119.0, "currency": "EUR"}
CLOCKS = {
    "wall": "wall clock per call (perf_counter; includes time the VM gave to other processes)",
    "cpu": "CPU time of the calling thread per call (thread_time; steadier on a shared VM)",
}
INSTALL = (
    "segment-analytics-python is not installed, so there is no baseline. To compare:\n"
    "  python3 -m venv /tmp/vbench && /tmp/vbench/bin/pip install -e . "
    "segment-analytics-python\n"
    "  /tmp/vbench/bin/python bench/sdk_track.py"
)


class ProductViewedByEmail(ProductViewed):
    """Product Viewed with the viewer's email: one field to pseudonymize."""

    email: str


def _client(transport: httpx.BaseTransport | None = None, **options: Any) -> Client:
    ok = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))
    return Client(
        "bench-write-key",
        transport=transport or ok,
        flush_interval=86_400,
        batch_size=2_500,
        max_queue_size=1_000_000,
        **options,
    )


class Case:
    """One measured call, and how to clear up after a sample (untimed)."""

    def __init__(self, call: Callable[[int], object], reset: Callable[[], object]) -> None:
        self.call = call
        self.reset = reset
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def sample(self, start: int, calls: int) -> None:
        call = self.call
        i = start
        for _ in range(calls // BATCH):
            cpu = time.thread_time_ns()
            wall = time.perf_counter_ns()
            for _ in range(BATCH):
                call(i)
                i += 1
            self.wall.append((time.perf_counter_ns() - wall) / BATCH / 1000)
            self.cpu.append((time.thread_time_ns() - cpu) / BATCH / 1000)
            self.reset()  # untimed: the worker sends (or the queue is emptied) between samples


def _segment_client() -> Any:
    # thread=0: no consumer, so nothing else runs during a sample; send=True: the queue put
    # is part of the call, as in production. host is never contacted.
    client = SegmentClient(
        "bench-write-key", host="http://127.0.0.1:9", send=True, thread=0, max_queue_size=10**7
    )
    client.consumers = []  # thread=0 leaves it unset, and Segment's atexit hook reads it
    return client


def _segment_reset(client: Any) -> Callable[[], None]:
    def reset() -> None:
        with client.queue.mutex:
            client.queue.queue.clear()
            client.queue.unfinished_tasks = 0

    return reset


def _cases(emails: list[str]) -> tuple[dict[str, Case], list[Client]]:
    plain = _client(consent_regime="opt_out", pseudonymize=False)
    private = _client(pseudonym_key=KEY)
    private.consent("user-42", granted=["analytics"])
    private.flush()
    # One client for the three private cases: each its own emails, or the first case's HMACs
    # would be the memo's hits in the next two (the target case computed no HMAC at all).
    typed = [f"typed-{email}" for email in emails]
    mixed = [f"mixed-{email}" for email in emails]
    cases: dict[str, Case] = {}
    if SegmentClient is not None:
        segment = _segment_client()
        cases["segment plain: untyped"] = Case(
            lambda i: segment.track("user-42", "Product Viewed", PROPS),
            _segment_reset(segment),
        )
    cases["ours plain: untyped, opt-out, no pseudonymization"] = Case(
        lambda i: plain.track("user-42", "Product Viewed", PROPS), plain.flush
    )
    cases["ours private: untyped + gate + 1 HMAC"] = Case(
        lambda i: private.track("user-42", "Product Viewed", {**PROPS, "email": emails[i]}),
        private.flush,
    )
    cases["ours typed + gate + 1 HMAC (target)"] = Case(
        lambda i: private.track("user-42", ProductViewedByEmail(**PROPS, email=typed[i])),
        private.flush,
    )
    cases["ours typed, class + dict, validated by us"] = Case(
        lambda i: private.track("user-42", ProductViewedByEmail, {**PROPS, "email": mixed[i]}),
        private.flush,
    )
    return cases, [plain, private]


def _memory_ours(events: int) -> float:
    release = threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        release.wait(60)  # a collector that never answers: nothing is delivered
        return httpx.Response(503)

    client = _client(httpx.MockTransport(hang), pseudonym_key=KEY, max_retries=0)
    client.consent("user-42", granted=["analytics"])
    client.track("user-42", ProductViewedByEmail(**PROPS, email="warm@example.com"))
    emails = [f"visitor{i}@example.com" for i in range(events)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for email in emails:
        client.track("user-42", ProductViewedByEmail(**PROPS, email=email))
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    stats = client.stats()
    assert stats.pending >= events, stats
    assert stats.sent == 0, stats
    logging.getLogger("journeykit").setLevel(logging.ERROR)  # the drops below are intended
    release.set()
    client.shutdown(timeout=0.1)
    return used / events


def _memory_segment(events: int) -> float:
    client = _segment_client()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(events):
        client.track("user-42", "Product Viewed", {**PROPS, "email": f"visitor{i}@example.com"})
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert client.queue.qsize() == events
    _segment_reset(client)()
    return used / events


def _report(cases: dict[str, Case]) -> None:
    for clock in ("wall", "cpu"):
        medians: dict[str, float] = {}
        print(f"\n{CLOCKS[clock]}")
        for name, case in cases.items():
            found = sorted(getattr(case, clock))
            medians[name] = median = statistics.median(found)
            p90 = found[int(len(found) * 0.9) - 1]
            print(f"  {name:<52} median {median:6.2f} us   p90 {p90:6.2f} us")
        ours_plain = medians["ours plain: untyped, opt-out, no pseudonymization"]
        target = medians["ours typed + gate + 1 HMAC (target)"]
        segment = medians.get("segment plain: untyped")
        if segment is None:
            print(f"  ratio typed+gate+HMAC / ours plain: {target / ours_plain:4.2f}x")
            continue
        print(
            f"  ratio ours typed+gate+HMAC / segment plain: {target / segment:4.2f}x  "
            "(target <= 0.50)\n"
            f"  ratio ours plain / segment plain:           {ours_plain / segment:4.2f}x"
        )
    if "segment plain: untyped" not in cases:
        print(INSTALL)


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50_000, help="calls per case")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--queued", type=int, default=10_000, help="events for the memory figure")
    args = parser.parse_args()
    iterations, rounds = args.iterations, args.rounds
    emails = [f"visitor{i}@example.com" for i in range(iterations * 2)]
    cases, clients = _cases(emails)
    print(
        f"python {platform.python_version()} on {platform.machine()}, {iterations:,} calls per "
        f"case in {rounds} interleaved rounds of batches of {BATCH}"
    )
    for case in cases.values():  # warm-up, then forget the samples
        case.sample(iterations, iterations // 10)
        case.wall.clear()
        case.cpu.clear()
    calls = iterations // rounds
    for round_ in range(rounds):  # interleaved, so that the VM's drift hits every case alike
        for case in cases.values():
            case.sample(round_ * calls, calls)
    _report(cases)
    for client in clients:
        stats = client.stats()
        assert stats.dropped_total == 0, stats.dropped
        client.shutdown(timeout=30)

    print(f"\nmemory per queued event ({args.queued:,} undeliverable typed events, tracemalloc):")
    print(f"  ours:    {_memory_ours(args.queued):7.0f} bytes   (target <= 1,024)")
    if SegmentClient is not None:
        print(f"  segment: {_memory_segment(args.queued):7.0f} bytes   (its queue of dicts)")


if __name__ == "__main__":
    main()
