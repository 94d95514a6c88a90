"""An open-loop load generator: requests sent on a fixed schedule, latency from the schedule.

wrk is closed-loop: each connection sends its next request when the last one is answered, so
a slow answer delays the requests behind it and they are never counted as slow (coordinated
omission), and the rate it offers is whatever the server sustains. "p99 at 80% of the maximum
rate" needs the opposite: requests start at ``rate`` per second whatever happens, and each
one's latency runs from when it was due, so time spent waiting for a free connection counts.

Raw HTTP/1.1 over asyncio streams, one request per connection at a time, connections opened
as needed up to ``max_connections``; the client's own cost stays small next to the server's.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PacedResult", "run_paced"]


@dataclass(frozen=True, slots=True)
class PacedResult:
    sent: int
    ok: int
    failed: int
    failures: dict[str, int]  # by HTTP status or exception name
    late_start_ms: float  # the most any request started after it was due
    latencies_ms: list[float]
    indexes: list[int]  # the schedule position of each latency's request

    def percentile(self, p: float, first: int = 0, end: int | None = None) -> float:
        """The ``p``-th percentile latency of the requests due from position ``first`` (to
        ``end``): a run's first seconds include the server's start-up (caches, connections)."""
        picked = [
            ms
            for i, ms in zip(self.indexes, self.latencies_ms, strict=True)
            if i >= first and (end is None or i < end)
        ]
        if not picked:
            return float("nan")
        ordered = sorted(picked)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _run(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    rate: float,
    seconds: float,
    max_connections: int,
) -> PacedResult:
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    slots = asyncio.Semaphore(max_connections)
    latencies: list[float] = []
    indexes: list[int] = []
    failures: dict[str, int] = {}
    late = 0.0
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05

    async def one(index: int, due: float) -> None:
        async with slots:
            reused = bool(idle)
            conn = idle.pop() if reused else await asyncio.open_connection(host, port)
            try:
                try:
                    status = await _exchange(*conn, make_request(index))
                except (OSError, asyncio.IncompleteReadError):
                    if not reused:
                        raise
                    # The server closed a connection idle past its keep-alive timeout: send
                    # again on a new one, as HTTP clients do (the clock still runs from "due").
                    conn[1].close()
                    conn = await asyncio.open_connection(host, port)
                    status = await _exchange(*conn, make_request(index))
            except (OSError, asyncio.IncompleteReadError) as exc:
                name = type(exc).__name__
                failures[name] = failures.get(name, 0) + 1
                conn[1].close()
                return
            idle.append(conn)
        if 200 <= status < 300:
            latencies.append((time.perf_counter() - due) * 1000)
            indexes.append(index)
        else:
            failures[str(status)] = failures.get(str(status), 0) + 1

    tasks = []
    for index in range(total):
        due = start + index / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            late = max(late, -wait * 1000)
        tasks.append(asyncio.create_task(one(index, due)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    failed = sum(failures.values())
    return PacedResult(total, len(latencies), failed, failures, late, latencies, indexes)


def run_paced(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    *,
    rate: float,
    seconds: float,
    max_connections: int = 64,
) -> PacedResult:
    """Send ``rate`` requests a second for ``seconds``; ``make_request(i)`` is the i-th's bytes.

    The client's own garbage collector is off meanwhile: its full collections (walking every
    task of the run) paused it 13-15 ms once a run, late for the requests due then, and that
    counted as the server's latency (docs/benchmarks.md, "Session 14").
    """
    enabled = gc.isenabled()
    gc.freeze()
    gc.disable()
    try:
        return asyncio.run(_run(host, port, make_request, rate, seconds, max_connections))
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
