"""Where a paced collector's slow requests spend their time: a diagnostic, not a benchmark.

    python bench/collector_phases.py [--rate 450] [--seconds 10] [--decisions] [--warm 6]
                                     [--switch-interval 0.001]

Serves the collector (uvicorn, httptools, uvloop, ``fsync=always``, as ``collector serve``)
in a child process that times, for every request, the handler as a whole, ``prepare`` (the
checks, on the event loop), each ``commit_many`` of the writer thread (wall and CPU time,
requests per write), with ``--decisions`` each inline decision (wall and CPU: on the event
loop with the embedded SQLite store, per hand-over to the decision thread with Redis, whose
wait is timed too) and each profile flush (wall and CPU), and every
garbage collection; then sends requests open-loop at ``--rate``
per second (``bench/_paced.py``) and prints the distributions and the largest pauses with when
they happened. A pause that grows with time is memory growing; one whose wall time is far
above its CPU time is waiting (the disk, the GIL). This found the dedup window's table
rebuilds (``commit_many`` of one request taking 10, 26, then 57 ms of CPU as the window grew).

``--warm N`` first saturates the server with wrk for N seconds, as ``collector_throughput.py``
does before its paced run (the dedup window full, the files large); only the paced run is
reported.

The child wraps those methods to time them (the timings are the point, so it measures a
slightly slower collector); the answers are the collector's own.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _paced import run_paced
from _workload import add_events_option, lua_script, paced_requests
from collector_throughput import KEY, PSEUDONYM_KEY, _free_port, _wait, _wrk

# Runs in the child: wraps the phases, serves, and dumps the timings on SIGUSR1.
_CHILD = """
import gc, json, os, signal, sys, time
from pathlib import Path
import uvicorn
from journeykit.collector import app as app_module
from journeykit.collector import ingest
from journeykit.collector._tuning import tune_for_serving
from journeykit.collector._handover import Handover
from journeykit.collector.decisions._writeback import WriteBehind
from journeykit.collector.personalize import Personalizer
from journeykit.collector.settings import CollectorSettings

handled, prepared, commits, collections = [], [], [], []
decided, computed, flushes = [], [], []
handle, prepare, commit_many = (
    app_module.CollectorCore.handle, ingest.Ingestor.prepare, ingest.Ingestor.commit_many)
hand_over, flush = Handover.run, WriteBehind.flush
for_requests, for_ids = Personalizer.for_requests, Personalizer.for_ids

def on_thread(method, into, size):  # method timed (wall, thread CPU) into into, with size(arg)
    def timed(self, argument):
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return method(self, argument)
        finally:
            into.append((started, time.perf_counter(), time.thread_time() - cpu, size(argument)))
    return timed

async def timed_hand_over(self, job):
    started = time.perf_counter()
    try:
        return await hand_over(self, job)
    finally:
        decided.append((started, time.perf_counter()))

def timed_flush(self, *args, **kwargs):
    started, cpu, queued = time.perf_counter(), time.thread_time(), self.queued
    try:
        return flush(self, *args, **kwargs)
    finally:
        flushes.append((started, time.perf_counter(), time.thread_time() - cpu, queued))

async def timed_handle(self, request, single_type, **kwargs):
    started = time.perf_counter()
    try:
        return await handle(self, request, single_type, **kwargs)
    finally:
        handled.append((started, time.perf_counter()))

def timed_prepare(self, *args, **kwargs):
    started = time.perf_counter()
    try:
        return prepare(self, *args, **kwargs)
    finally:
        prepared.append((started, time.perf_counter()))

def on_gc(phase, info):
    if phase == "start":
        collections.append([time.perf_counter(), None, info["generation"]])
    elif collections:
        collections[-1][1] = time.perf_counter()

def dump(*_):
    out = {"handled": handled, "prepared": prepared, "commits": commits,
           "decided": decided, "computed": computed, "flushes": flushes,
           "collections": [c for c in collections if c[1] is not None]}
    Path(os.environ["PHASES_OUT"]).write_text(json.dumps(out))
    os._exit(0)

app_module.CollectorCore.handle = timed_handle
ingest.Ingestor.prepare = timed_prepare
ingest.Ingestor.commit_many = on_thread(commit_many, commits, len)
Handover.run = timed_hand_over
WriteBehind.flush = timed_flush
Personalizer.for_requests = on_thread(for_requests, computed, len)
Personalizer.for_ids = on_thread(for_ids, computed, lambda ids: 1)
settings = CollectorSettings(
    data_dir=Path(os.environ["PHASES_DATA"]), write_keys=[os.environ["PHASES_KEY"]],
    consent_regime="opt_out", fsync="always", decisions=os.environ["PHASES_DECISIONS"] == "1",
    pseudonym_key=os.environ["PHASES_PSEUDONYM_KEY"])
app = app_module.create_app(settings)
tune_for_serving()
if os.environ.get("PHASES_SWITCH"):
    sys.setswitchinterval(float(os.environ["PHASES_SWITCH"]))
gc.callbacks.append(on_gc)
signal.signal(signal.SIGUSR1, dump)
uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PHASES_PORT"]), log_level="warning",
            loop="uvloop", http="httptools", proxy_headers=False)
"""


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _spread(name: str, durations: list[float]) -> None:
    if not durations:
        print(f"{name:<28} none")
        return
    ordered = sorted(durations)
    at = [ordered[min(len(ordered) - 1, int(len(ordered) * q))] for q in (0.5, 0.9, 0.99)]
    print(
        f"{name:<28} n {len(ordered):6d}  p50 {_ms(at[0]):>6} ms  p90 {_ms(at[1]):>6} ms  "
        f"p99 {_ms(at[2]):>6} ms  max {_ms(ordered[-1]):>6} ms"
    )


def report(phases: dict[str, Any], top: int, since: float = 0.0) -> None:
    """Print the timings that started at ``since`` (``time.perf_counter``, one clock for every
    process on Linux) or later."""
    phases = {name: [t for t in times if t[0] >= since] for name, times in phases.items()}
    handled, prepared = phases["handled"], phases["prepared"]
    commits, collections = phases["commits"], phases["collections"]
    start = min((a for a, _ in handled), default=0.0)
    _spread("handler (whole request)", [b - a for a, b in handled])
    _spread("prepare (event loop)", [b - a for a, b in prepared])
    _spread("commit_many, wall", [b - a for a, b, _, _ in commits])
    _spread("commit_many, CPU", [cpu for _, _, cpu, _ in commits])
    # Handed over only to a remote store (Redis); SQLite's are decided on the loop.
    _spread("decision hand-over, wait", [b - a for a, b in phases["decided"]])
    # Per call: on the loop, or the decision thread's per hand-over (GIL waits included).
    _spread("inline decisions, wall", [b - a for a, b, _, _ in phases["computed"]])
    _spread("inline decisions, CPU", [cpu for _, _, cpu, _ in phases["computed"]])
    _spread("profile flush, wall", [b - a for a, b, _, _ in phases["flushes"]])
    _spread("profile flush, CPU", [cpu for _, _, cpu, _ in phases["flushes"]])
    for generation in (0, 1, 2):
        _spread(
            f"gc generation {generation}", [b - a for a, b, g in collections if g == generation]
        )
    print(f"\nlargest commit_many (at s, wall ms, CPU ms, requests), {top} of {len(commits)}:")
    for a, b, cpu, n in sorted(commits, key=lambda c: c[0] - c[1])[:top]:
        print(f"  {a - start:7.2f}  {_ms(b - a):>6}  {_ms(cpu):>6}  {n}")
    print(f"largest collections (at s, ms, generation), {top} of {len(collections)}:")
    for a, b, g in sorted(collections, key=lambda c: c[0] - c[1])[:top]:
        print(f"  {a - start:7.2f}  {_ms(b - a):>6}  {g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=450.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--decisions", action="store_true", help="profiles and decisions on")
    parser.add_argument("--top", type=int, default=8, help="largest pauses listed")
    add_events_option(parser)
    parser.add_argument(
        "--warm",
        type=int,
        default=0,
        help="seconds of saturating load with wrk (16 connections) before the paced run, as "
        "collector_throughput.py runs it (a full dedup window, big files); not reported",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="the server's sys.setswitchinterval in seconds (collector serve's: 0.0005)",
    )
    args = parser.parse_args()
    auth = base64.b64encode(f"{KEY}:".encode()).decode()
    requests = paced_requests(max(int(args.rate * args.seconds), 1), auth, "phases", args.events)
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        out = Path(tmp) / "phases.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYKIT_")}
        env.update(
            PHASES_PORT=str(port),
            PHASES_DATA=str(Path(tmp) / "data"),
            PHASES_OUT=str(out),
            PHASES_KEY=KEY,
            PHASES_PSEUDONYM_KEY=PSEUDONYM_KEY,
            PHASES_DECISIONS="1" if args.decisions else "0",
            PHASES_SWITCH="" if args.switch_interval is None else str(args.switch_interval),
        )
        child = subprocess.Popen([sys.executable, "-c", _CHILD], env=env)
        try:
            _wait(f"http://127.0.0.1:{port}", child)
            if args.warm:
                script = Path(tmp) / "batch.lua"
                script.write_text(lua_script(auth, args.events))
                _wrk(f"http://127.0.0.1:{port}/v1/batch", args.warm, 16, script)
            since = time.perf_counter()
            result = run_paced(
                "127.0.0.1", port, requests.__getitem__, rate=args.rate, seconds=args.seconds
            )
            child.send_signal(signal.SIGUSR1)
            child.wait(30)
        finally:
            if child.poll() is None:
                child.kill()
        print(
            f"paced at {args.rate:.0f} requests/s for {args.seconds:.0f} s, decisions "
            f"{'on' if args.decisions else 'off'}: {result.ok} answered, {result.failed} failed; "
            f"client latency from when each was due: p50 {result.percentile(50):.1f} ms, "
            f"p99 {result.percentile(99):.1f} ms, max {max(result.latencies_ms, default=0):.1f} ms"
        )
        if args.warm:
            print(f"(after {args.warm} s of saturating load with wrk, not reported)")
        report(json.loads(out.read_text()), args.top, since)


if __name__ == "__main__":
    main()
