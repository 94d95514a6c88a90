"""What keeping profiles and deciding costs per ingested event, against issue #4's 20% budget.

Run from the repository root:
    python bench/decisions_budget.py [--events small|rich] [--ingestion-us 24.4]

The events are the collector benchmarks' own (``bench/_workload.py``: batches of 100 events
of 100 subjects), as the collector stores them. Measured in one process, CPU time, after a
warm-up that gives every subject a stored profile:

- the fold alone: ``fold`` of 1,000 queued events over the stored profiles (what a flush
  computes, without the store);
- ``DecisionEngine.update`` of each batch of 100, its flushes included (the fold, the SQLite
  transaction, the queue): the per-event cost of keeping profiles;
- the inline decision: ``decide_many`` of one subject after each batch (the collector's default
  ``inline_decisions = 1``), per decision and per event of its batch.

Baseline in the same run: ``orjson.loads`` + ``orjson.dumps`` of the same events. With
``--ingestion-us`` (the collector's CPU per event with decisions off, from
``collector_throughput.py``), each cost is also printed as a share of it, beside the 20% that
"ingestion with decisions on within 20% of off" leaves for all of them together.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from _workload import SHAPES, add_events_option, templates

from journeykit.collector.decisions import DecisionEngine, DecisionSettings
from journeykit.collector.decisions._timestamps import TimeParser
from journeykit.collector.decisions._update import UpdateCounts, fold

BATCHES = 300  # of 100 events: 3 warm-up rounds' worth of each subject's events
FLUSH = 1_000  # events per fold, the collector's flush_events


def _stored_batches(shape: str, count: int) -> list[list[dict[str, Any]]]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    rows = templates(shape)
    out = []
    for b in range(count):
        batch = []
        for i, (before, after) in enumerate(rows, 1):
            event = orjson.loads(f"{before}m-{b}-{i}{after}")
            event["originalTimestamp"] = event.get("timestamp", now)
            event["timestamp"] = event["receivedAt"] = now
            batch.append(event)
        out.append(batch)
    return out


def _cpu(run: Callable[[], object]) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start


def _measure(shape: str, rounds: int) -> dict[str, list[float]]:
    batches = _stored_batches(shape, BATCHES)
    events = [e for batch in batches for e in batch]
    figures: dict[str, list[float]] = {"baseline": [], "fold": [], "update": [], "decide": []}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            settings = DecisionSettings()
            engine = DecisionEngine.open(settings, Path(tmp))
            try:
                third = BATCHES // 3
                for batch in batches[:third]:  # every subject gets a stored profile
                    engine.update(batch)
                engine.flush()
                decided = 0.0
                start = time.process_time()
                for batch in batches[third : 2 * third]:
                    engine.update(batch)
                    subject = batch[0]["userId"]
                    decided += _decide_cpu(engine, subject)
                spent = time.process_time() - start - decided
                engine.flush()
                timed = third * 100
                figures["update"].append(spent / timed)
                figures["decide"].append(decided / third)
                figures["fold"].append(_fold_cost(engine, events[2 * third * 100 :]))
            finally:
                engine.close()
        figures["baseline"].append(_baseline(events))
    return figures


def _decide_cpu(engine: DecisionEngine, subject: str) -> float:
    start = time.process_time()
    engine.decide_many([subject], {subject: True})
    return time.process_time() - start


def _baseline(events: list[dict[str, Any]]) -> float:
    """``orjson.loads`` + ``orjson.dumps`` of each event, per event."""
    lines = [orjson.dumps(e) for e in events]
    start = time.process_time()
    for line in lines:
        orjson.dumps(orjson.loads(line))
    return (time.process_time() - start) / len(lines)


def _fold_cost(engine: DecisionEngine, events: list[dict[str, Any]]) -> float:
    store = engine._store  # the stored documents the flush would read
    money = engine.rules.currency
    times = TimeParser()
    now = time.time()
    spent = 0.0
    for start in range(0, len(events) - FLUSH + 1, FLUSH):
        chunk = events[start : start + FLUSH]
        spent += _cpu(
            lambda c=chunk: fold(c, store.fetch, money, now, 1800.0, UpdateCounts(), None, times)
        )
    return spent / (len(events) // FLUSH * FLUSH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_events_option(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--ingestion-us",
        type=float,
        default=None,
        help="the collector's CPU per event with decisions off (collector_throughput.py)",
    )
    args = parser.parse_args()
    assert args.events in SHAPES
    figures = _measure(args.events, args.rounds)
    med = {name: statistics.median(values) * 1e6 for name, values in figures.items()}
    per_event = {
        "the fold alone": med["fold"],
        "update, flushes included": med["update"],
        "the batch's inline decision": med["decide"] / 100,
    }
    print(f"{args.events} events, {args.rounds} rounds (medians), CPU per event:")
    print(f"  baseline: orjson loads + dumps       {med['baseline']:6.2f} µs")
    for name, value in per_event.items():
        line = f"  {name:<35} {value:6.2f} µs  ({value / med['baseline']:4.1f}x the baseline)"
        if args.ingestion_us:
            line += f"  {value / args.ingestion_us:6.1%} of ingestion"
        print(line)
    print(f"  (one inline decision: {med['decide']:.0f} µs)")
    if args.ingestion_us:
        total = per_event["update, flushes included"] + per_event["the batch's inline decision"]
        budget = 0.2 * args.ingestion_us
        print(
            f"update + decision: {total:.2f} µs per event = {total / args.ingestion_us:.1%} of "
            f"ingestion's {args.ingestion_us:g} µs; within 20% allows {budget:.2f} µs"
        )


if __name__ == "__main__":
    main()
