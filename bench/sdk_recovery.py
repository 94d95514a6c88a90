"""Benchmark: SDK recovery after a collector blip and after an outage, with the durable spool.

Run from the repository root:  python bench/sdk_recovery.py [--outage SECONDS] [--rate N]

1. Blip: the sink (``bench/_sdk_sink.py``, its own process) answers the first 20 requests 500,
   then 200. One client (default options) tracks 1,000 events at once. Reported: events lost,
   time from recovery (the 20th failure answered) to the last event delivered, attempts, and
   the shortest wait the client left between a failed attempt and the retry of that batch. Run
   with the spool on and off.
2. Outage: nothing listens on the collector's port for ``--outage`` seconds (60 by default)
   while the client tracks ``--rate`` events per second; then the sink starts on that port.
   Reported: events tracked, spooled, delivered, lost, and the time from the sink's start to
   the last event delivered.

The sink's clock stamps every POST; both figures are differences of its timestamps, so they
do not depend on when the client notices.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from _sdk_sink import free_port, running

from journeykit.sdk import Client

KEY = "bench-write-key"
PROPS = {"product_id": "p-1", "name": "Trail Runner", "price": 119.0, "currency": "EUR"}
OPTIONS: dict[str, Any] = {"consent_regime": "opt_out", "pseudonymize": False}


@contextmanager
def sink(port: int, *args: str) -> Iterator[str]:
    """The recording sink in a child process on ``port``; yields its URL."""
    with running(port, "--record", *args) as url:
        yield url


def _stats(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(url + "/stats", timeout=10).json()
    return body


def _settled(client: Client, n: int) -> bool:
    s = client.stats()
    return s.sent + s.replayed + s.dropped_total >= n and s.pending == 0


def blip(spool: Path | None) -> dict[str, Any]:
    port = free_port()
    with sink(port, "--fail-first", "20") as url:
        options = {**OPTIONS, "spool_dir": spool} if spool else OPTIONS
        client = Client(KEY, host=url, max_queue_size=10_000, **options)
        ids = [client.track("user-42", "Product Viewed", PROPS).message_id for _ in range(1_000)]
        deadline = time.monotonic() + 300
        while not _settled(client, len(ids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = client.stats()
        client.shutdown(timeout=5)
        seen = _stats(url)
    posts: list[float] = [when for when, _ in seen["posts"]]
    # A retry is a POST of the same batch (same first event) as the failed one before it.
    failed = seen["posts"][:20]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(seen["posts"][:21]) if a[1] == b[1]]
    assert len(failed) == 20
    received = set(seen["ids"])
    return {
        "lost": sum(1 for i in ids if i not in received),
        "recovery_to_all": posts[-1] - posts[19] if len(posts) > 20 else float("nan"),
        "attempts": len(posts),
        "min_gap": min(gaps) if gaps else float("nan"),
        "dropped": dict(stats.dropped),
        "spooled": stats.spooled,
    }


def outage(seconds: float, rate: int, spool: Path) -> dict[str, Any]:
    port = free_port()  # nothing listens yet: connection refused
    url = f"http://127.0.0.1:{port}"
    client = Client(KEY, host=url, spool_dir=spool, **OPTIONS)
    ids: list[str | None] = []
    begin = time.monotonic()

    def track_until(end: float) -> None:
        while time.monotonic() < end:
            ids.append(client.track("user-42", "Product Viewed", PROPS).message_id)
            time.sleep(1 / rate)

    track_until(begin + seconds)
    with sink(port) as url:
        started = time.time()
        track_until(time.monotonic() + 2)  # traffic goes on after the recovery
        deadline = time.monotonic() + 300
        while not _settled(client, len(ids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = client.stats()
        client.shutdown(timeout=5)
        seen = _stats(url)
    received = set(seen["ids"])
    return {
        "tracked": len(ids),
        "spooled": stats.spooled,
        "delivered": sum(1 for i in ids if i in received),
        "lost": sum(1 for i in ids if i not in received),
        "recovery_to_all": max(when for when, _ in seen["posts"]) - started,
        "dropped": dict(stats.dropped),
    }


def main() -> None:
    """Run the scenarios and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the sink is down")
    parser.add_argument("--rate", type=int, default=200, help="events/s tracked meanwhile")
    args = parser.parse_args()
    logging.getLogger("journeykit").addHandler(logging.NullHandler())
    logging.getLogger("journeykit").propagate = False
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus")
    with tempfile.TemporaryDirectory() as tmp:
        for label, spool in (("spool on", Path(tmp) / "blip"), ("spool off", None)):
            r = blip(spool)
            print(
                f"blip, 20 x 500, 1,000 events, {label}: lost {r['lost']}, recovery to all "
                f"delivered {r['recovery_to_all']:.2f} s (target <= 10 s), {r['attempts']} "
                f"attempts, shortest wait after a failure {r['min_gap'] * 1000:.0f} ms, "
                f"spooled {r['spooled']}, dropped {r['dropped']}"
            )
        r = outage(args.outage, args.rate, Path(tmp) / "outage")
        print(
            f"outage {args.outage:g} s at ~{args.rate} events/s, spool on: tracked "
            f"{r['tracked']:,}, spooled {r['spooled']:,}, delivered {r['delivered']:,}, lost "
            f"{r['lost']}, sink start to all delivered {r['recovery_to_all']:.2f} s, "
            f"dropped {r['dropped']}"
        )


if __name__ == "__main__":
    main()
