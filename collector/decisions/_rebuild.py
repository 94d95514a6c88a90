"""Rebuild the profile store from the collector's NDJSON event files.

Profiles, item statistics and RFM cut points are derived data: every stored event is in
``<data-dir>/events/dt=YYYY-MM-DD/hr=HH/*.ndjson[.gz]``. :func:`rebuild` empties the configured
store and replays those files through the engine, hour by hour; within an hour the files of
several collector processes are merged by ``receivedAt`` so that order-sensitive traits (the
cart, recently viewed products) see the events in the order they arrived. Memory holds one
hour's events. Run it with the collectors stopped (or pointed elsewhere): events they write
meanwhile would be folded into a store that is being emptied.
"""

from __future__ import annotations

import gzip
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from journeykit.collector.decisions._engine import DecisionEngine, open_store
from journeykit.collector.decisions._rules import load_rules
from journeykit.collector.decisions._settings import DecisionSettings
from journeykit.collector.decisions._store import StoreUnavailable

__all__ = ["RebuildResult", "rebuild"]

CHUNK = 5_000  # events per update() call, each chunk flushed before the next is read


@dataclass(slots=True)
class RebuildResult:
    """What a rebuild read: files, events replayed, and lines or events left out by reason."""

    files: int = 0
    events: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def _hours(events_dir: Path) -> Iterator[list[Path]]:
    """The NDJSON files of each hour partition, oldest hour first."""
    if not events_dir.is_dir():
        return
    for hour in sorted(p for p in events_dir.glob("dt=*/hr=*") if p.is_dir()):
        files = [*hour.glob("*.ndjson"), *hour.glob("*.ndjson.gz")]
        found = sorted(p for p in files if p.is_file() and not p.name.startswith("."))
        if found:
            yield found


def _lines(path: Path) -> Iterator[bytes]:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as packed:
            yield from packed
    else:
        with path.open("rb") as handle:
            yield from handle


def _read_hour(files: list[Path], result: RebuildResult) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for path in files:
        result.files += 1
        for line in _lines(path):
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                result.skipped["bad_json"] += 1  # e.g. a torn last line of a crashed writer
                continue
            if type(event) is not dict:
                result.skipped["not_an_object"] += 1
                continue
            events.append(event)
    received = [e.get("receivedAt") for e in events]
    if all(type(r) is str for r in received):  # the collector always writes it
        events.sort(key=lambda e: str(e["receivedAt"]))  # stable: a file's order within a ms
    return events


def _flush(engine: DecisionEngine) -> None:
    if not engine.flush():
        raise StoreUnavailable(f"the profile store failed during the rebuild: {engine.stats}")


def rebuild(
    settings: DecisionSettings,
    data_dir: Path,
    clock: Callable[[], float] = time.time,
) -> RebuildResult:
    """Empty the configured profile store and replay ``data_dir``'s stored events into it.

    Returns the counts; events without a subject are counted under ``no_subject``, unreadable
    lines under ``bad_json``. Raises ``StoreUnavailable`` if the store cannot be written.
    """
    store = open_store(settings, data_dir)
    # Flushed here, chunk by chunk: no background thread racing the replay.
    quiet = settings.model_copy(
        update={"flush_interval_seconds": 3600.0, "flush_events": 10 * CHUNK}
    )
    engine = DecisionEngine(store, load_rules(settings.rules_file), quiet, clock)
    result = RebuildResult()
    try:
        store.clear()
        for files in _hours(data_dir / "events"):
            events = _read_hour(files, result)
            for start in range(0, len(events), CHUNK):
                update = engine.update(events[start : start + CHUNK])
                result.events += update.applied
                result.skipped.update(update.skipped)
                _flush(engine)
        _flush(engine)
        engine.refresh_rfm()
    finally:
        engine.close()
    return result
