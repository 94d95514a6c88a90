"""The dedup window's cost per batch and its pauses, at its memory bound.

    python bench/collector_dedup.py [--max-entries 500000] [--batches 20000]

Fills a ``Deduplicator`` (the collector's default: a 1-hour window, 500,000 ids) to its bound
with batches of 100 fresh messageIds, then times ``reserve`` (run on the event loop, per
request) and ``commit`` (run on the writer thread, per stored request) of ``--batches`` more,
as the collector settles them, and prints the mean of each per batch and the calls over 4 ms:
the window's table rebuilds and forgotten generations, which every request of the process
waits out (the GIL is held throughout). The serving collector's settings for the garbage
collector apply (``collector/_gc.py``).
"""

from __future__ import annotations

import argparse
import gc
import time
import uuid

from journeykit.collector._gc import GC_THRESHOLDS
from journeykit.collector.dedup import Deduplicator

PAUSE = 0.004  # seconds: a call this long is reported


def _batch(n: int) -> list[str]:
    stem = uuid.uuid4().hex[:12]
    return [f"m-{n}-{i}-{stem}" for i in range(100)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-entries", type=int, default=500_000)
    parser.add_argument("--batches", type=int, default=20_000)
    args = parser.parse_args()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    dedup = Deduplicator(3_600, args.max_entries)
    filled = 0
    while len(dedup) < args.max_entries * 0.9 or filled < args.max_entries // 100 + 1_000:
        ids = _batch(filled)
        dedup.reserve(ids)
        dedup.commit(ids)
        filled += 1
    batches = [_batch(filled + n) for n in range(args.batches)]
    gc.freeze()  # the bench's own lists: a serving collector has no such pile of young ones
    reserve = commit = 0.0
    pauses: list[float] = []
    for ids in batches:
        t0 = time.perf_counter()
        dedup.reserve(ids)
        t1 = time.perf_counter()
        dedup.commit(ids)
        t2 = time.perf_counter()
        reserve += t1 - t0
        commit += t2 - t1
        pauses += [t for t in (t1 - t0, t2 - t1) if t > PAUSE]
    n = len(batches)
    print(
        f"dedup window of {len(dedup):,} ids (bound {args.max_entries:,}), {n:,} batches of 100 "
        f"fresh ids: reserve {reserve / n * 1e6:.1f} us, commit {commit / n * 1e6:.1f} us "
        f"per batch"
    )
    worst = max(pauses, default=0.0)
    every = n * 100 / max(len(pauses), 1)
    print(
        f"calls over {PAUSE * 1e3:.0f} ms: {len(pauses)} (one per {every:,.0f} ids), "
        f"{sum(pauses) * 1e3:.0f} ms in all, the longest {worst * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
