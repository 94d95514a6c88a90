"""Benchmark: the caller's cost of one SDK track(), typed and private versus plain.

Run from the repository root:  python bench/sdk_track.py [--iterations N]

Measures, in the same run (this VM's speed drifts over minutes), the median and p99 time of one
``Client.track`` call on the caller's thread, up to and including putting it on the queue:

- plain: an untyped track, consent regime opt-out with no state (the gate's cheapest path;
  the gate cannot be switched off), pseudonymization off;
- private: the same untyped track for a subject who granted analytics, with its email
  pseudonymized (a new email each call, so an HMAC is computed every time);
- typed: as private, but the event is a typed model built in the timed call;
- typed, class + dict: the client validates the properties itself.

Each sample times a batch of calls and divides; the cases take turns over several rounds. The
worker thread does not send during a
sample: events linger (``flush_interval`` is a day) and are flushed between samples, untimed.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

from journeykit.sdk import Client
from journeykit.sdk.events import ProductViewed

BATCH = 100
ROUNDS = 5
KEY = "bench-key-0123456789abcdef-not-real"


class ProductViewedByEmail(ProductViewed):
    """Product Viewed with the viewer's email: one field to pseudonymize."""

    email: str


def _client(**options: Any) -> Client:
    ok = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))
    return Client(
        "bench-write-key",
        transport=ok,
        flush_interval=86_400,
        batch_size=2_500,
        max_queue_size=1_000_000,
        **options,
    )


def _sample(client: Client, fn: Callable[[int], object], start: int, calls: int) -> list[float]:
    samples = []
    i = start
    for _ in range(calls // BATCH):
        begin = time.perf_counter_ns()
        for _ in range(BATCH):
            fn(i)
            i += 1
        samples.append((time.perf_counter_ns() - begin) / BATCH / 1000)
        client.flush()  # untimed: the worker sends between samples, not during them
    return samples


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50_000)
    iterations = parser.parse_args().iterations
    emails = [f"visitor{i}@example.com" for i in range(iterations * 2)]
    props = {"product_id": "p-1", "name": "Trail Runner", "price": 119.0, "currency": "EUR"}

    plain = _client(consent_regime="opt_out", pseudonymize=False)
    private = _client(pseudonym_key=KEY)
    private.consent("user-42", granted=["analytics"])
    private.flush()

    cases: dict[str, tuple[Client, Callable[[int], object]]] = {
        "plain: untyped, gate opt-out/no state, no pseudonymization": (
            plain,
            lambda i: plain.track("user-42", "Product Viewed", props),
        ),
        "private: untyped, gate granted, 1 field HMAC": (
            private,
            lambda i: private.track("user-42", "Product Viewed", {**props, "email": emails[i]}),
        ),
        "typed: model built + gate granted + 1 field HMAC": (
            private,
            lambda i: private.track("user-42", ProductViewedByEmail(**props, email=emails[i])),
        ),
        "typed, class + dict: validated by the client": (
            private,
            lambda i: private.track("user-42", ProductViewedByEmail, {**props, "email": emails[i]}),
        ),
    }
    print(
        f"python {platform.python_version()} on {platform.machine()}, {iterations} calls each, "
        f"in {ROUNDS} interleaved rounds"
    )
    for client, fn in cases.values():  # warm-up
        _sample(client, fn, 0, iterations // 10)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(ROUNDS):  # interleaved, so that the VM's drift hits every case alike
        for name, (client, fn) in cases.items():
            calls = iterations // ROUNDS
            samples[name] += _sample(client, fn, round_ * calls, calls)
    baseline = 0.0
    for name, found in samples.items():
        found.sort()
        median, p99 = statistics.median(found), found[int(len(found) * 0.99) - 1]
        baseline = baseline or median
        print(
            f"{name:<58} median {median:6.2f} us   p99 {p99:6.2f} us   "
            f"= {median / baseline:4.2f}x plain"
        )
    for client in (plain, private):
        stats = client.stats()
        assert stats.dropped_total == 0, stats.dropped
        client.shutdown(timeout=30)


if __name__ == "__main__":
    main()
