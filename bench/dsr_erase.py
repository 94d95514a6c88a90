"""Erasure throughput and memory over a large NDJSON data dir (issue 6).

Writes ``--gigabytes`` of realistic stored events (default 1) into a temporary data dir laid
out as the collector lays it out (128 MB files by hour), with one subject's events sprinkled
through every file, then times ``resolve`` (finding the subject and its linked ids) and
``erase_events`` (rewriting each file without them). Prints MB/s for each and the peak memory
the erasure allocated (tracemalloc), which must not grow with the data.

    python bench/dsr_erase.py            # 1 GB
    python bench/dsr_erase.py --gigabytes 0.2 --keep /tmp/dsr-bench
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import orjson

from journeykit.collector.dsr.erase import erase_events
from journeykit.collector.dsr.subject import resolve

FILE_BYTES = 128 * 1024 * 1024
SUBJECT_EVERY = 1000  # one event in a thousand is the subject's


def _event(n: int) -> bytes:
    user = "alice" if n % SUBJECT_EVERY == 0 else f"user-{n % 50_000}"
    return orjson.dumps(
        {
            "type": "track",
            "event": "Product Viewed",
            "messageId": f"{n:032x}",
            "userId": user,
            "anonymousId": f"anon-{user}",
            "properties": {"product_id": f"p{n % 997}", "price": 19.9, "category": "shoes"},
            "context": {"ip": "203.0.113.0", "library": {"name": "journeykit", "version": "0.1"}},
            "timestamp": "2026-11-20T10:00:00.000Z",
            "originalTimestamp": "2026-11-20T10:00:00.000Z",
            "receivedAt": "2026-11-20T10:00:00.120Z",
            "_source": "web",
        }
    )


def write_data(root: Path, total: int) -> tuple[int, int]:
    """NDJSON files of about ``total`` bytes; (bytes written, subject events)."""
    written = events = subject = 0
    file_no = 0
    while written < total:
        part = root / "events" / "dt=2026-11-20" / f"hr={file_no % 24:02d}"
        part.mkdir(parents=True, exist_ok=True)
        lines: list[bytes] = []
        size = 0
        while size < FILE_BYTES and written + size < total:
            line = _event(events)
            subject += events % SUBJECT_EVERY == 0
            events += 1
            lines.append(line)
            size += len(line) + 1
        (part / f"bench-1-1-{file_no:04d}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
        written += size
        file_no += 1
    return written, subject


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--keep", type=Path, help="data dir to use and keep (default: a temp dir)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="dsr-bench-"))
    try:
        start = time.perf_counter()
        size, expected = write_data(root, int(args.gigabytes * 1024**3))
        mb = size / 1024**2
        print(f"data: {mb:,.0f} MB written in {time.perf_counter() - start:.1f} s")

        # Baseline, same run: copying every file (read, write, fsync) is what a rewrite can
        # at best cost, since erasure rewrites each file that holds the subject.
        start = time.perf_counter()
        for path in sorted((root / "events").rglob("*.ndjson")):
            copy = path.with_name(".baseline-copy")
            with path.open("rb") as source, copy.open("wb") as target:
                shutil.copyfileobj(source, target, 4 * 1024 * 1024)
                target.flush()
                os.fsync(target.fileno())
            copy.unlink()
        took = time.perf_counter() - start
        print(f"baseline: {took:6.2f} s  {mb / took:8.1f} MB/s  (copy + fsync of every file)")

        start = time.perf_counter()
        subject = resolve(root, "alice", None)
        took = time.perf_counter() - start
        print(f"resolve:  {took:6.2f} s  {mb / took:8.1f} MB/s  ids found: {sorted(subject.ids)}")

        tracemalloc.start()
        start = time.perf_counter()
        result = erase_events(root, subject)
        took = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(
            f"erase:    {took:6.2f} s  {mb / took:8.1f} MB/s  removed {result.events_removed:,} "
            f"of {expected:,} expected, {len(result.files_rewritten)} files rewritten, "
            f"peak allocated {peak / 1024**2:.1f} MB"
        )
        if result.events_removed != expected:
            raise SystemExit("erasure removed a different number of events than were written")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
