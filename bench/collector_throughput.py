"""Collector throughput against a floor measured in the same run.

    python bench/collector_throughput.py [--seconds 10] [--connections 16] [--decisions both]

Needs ``wrk`` (Debian: ``apt-get install wrk``). For each server (the bare floor endpoint of
``bench/_floor_app.py`` without and with an fsync per request, then the collector with
``fsync=always``), wrk posts batches of 100 distinct events, each with a fresh messageId, to
127.0.0.1 for ``--seconds``. Printed: requests/s and events/s, p50/p99 latency, server CPU
time per event (from /proc), and the ratios to the floor. Then the collector again, paced at
80% of the rate it sustained: an open-loop generator (``bench/_paced.py``) sends requests on a
fixed schedule and times each from when it was due, so p99 is the latency a client sees below
saturation, waiting included (wrk, closed-loop, would hide it). The paced server is a fresh
process: its first ``WARM_SECONDS`` (2 s) of requests are sent and timed but reported apart
("first 2 s p99"), since they measure its start-up (first calls, caches, the client opening
its connections), not the steady state; p50/p99 are of the ``--seconds`` after them. Then
saturated again, since this machine's speed drifts: the paced rate is printed as a share of
both saturated rates, with the busiest server thread's share of a core during the paced run
(near 100%: overloaded), and the collector's own fsync and request-handling tails over the
same seconds as p50/p99 (from its ``/metrics`` histograms, so bucket bounds): a client's
latency beyond the handler's waited in the event loop's queue before the handler, or in the
client. Last, the floor without fsync again: the CPU-per-event ratio is the mean of the
collector's two saturated runs over the mean of the floor's two runs, one before and one after,
since the machine's speed drifts over the minutes between them.

Every server writes into a file or data dir of its own, removed (and the disk synced) once it
has stopped: what one run left behind slowed the runs after it (see ``_discard``).

``--workers N`` runs every server, the floor's and the collector's, with N worker processes
(uvicorn's ``--workers``, ``collector serve --workers``); CPU is summed over each server's
processes.

``--decisions both`` (the default) runs the collector twice, with decisions off
(``JOURNEYKIT_DECISIONS=false``) and on (the default settings: profiles updated and up to
``inline_decisions`` subjects decided per batch), and prints the CPU per event of "on" over
"off"; ``on`` or ``off`` runs only one of them.

``--events rich`` sends events of ~1.25 KB as analytics.js does instead of the ~200-byte ones
(``bench/_workload.py``): the issue's floor figures (~3,500 requests/s, pydantic at ~9 us per
event) match the rich shape.

``--attempts N`` repeats a mode's three runs (saturated, paced, saturated) up to N times until
the two saturated rates agree within ``HELD`` (10%): when they do not, the machine's speed
moved during the paced run, and "80% of the maximum rate" was a different load on the machine
it ran on. Every attempt is printed; the summary uses the first that held (or the last).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from _paced import run_paced
from _workload import add_events_option, lua_script, paced_requests

BENCH = Path(__file__).resolve().parent
KEY = "bench-write-key-0123456789"
WARM_SECONDS = 2.0  # a paced run's start, sent and timed but left out of its p50/p99
HELD = 0.10  # saturated rates before and after a paced run agreeing within this: speed held
PSEUDONYM_KEY = "bench-pseudonym-key-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat(path: Path) -> list[str]:
    """The fields of a ``/proc`` ``stat`` file after the command's name (``ppid`` first, then
    ``utime`` at 11 and ``stime`` at 12); raises ``FileNotFoundError`` once it has ended."""
    try:
        return (path / "stat").read_text().rsplit(")", 1)[1].split()
    except ProcessLookupError:  # ended between the open and the read
        raise FileNotFoundError(path) from None


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it: the workers of ``--workers N`` are its children."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat(entry)
            except FileNotFoundError:  # it ended meanwhile
                continue
            parents[int(entry.name)] = int(fields[1])
    tree, todo = [pid], [pid]
    while todo:
        parent = todo.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        tree += children
        todo += children
    return tree


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and the processes below it."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in _tree(pid):
        try:
            fields = _stat(Path(f"/proc/{member}"))
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


def _thread_ticks(pid: int) -> dict[str, int]:
    """CPU ticks (user + system) of each thread of ``pid`` and of the processes below it."""
    out = {}
    for member in _tree(pid):
        try:
            tasks = list(Path(f"/proc/{member}/task").iterdir())
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                fields = _stat(task)
            except FileNotFoundError:  # the thread ended meanwhile
                continue
            out[f"{member}/{task.name}"] = int(fields[11]) + int(fields[12])
    return out


def _busiest(before: dict[str, int], after: dict[str, int], seconds: float) -> float:
    """The busiest thread's share of one core between two ``_thread_ticks`` (the event loop's,
    in a collector): near 1.0 it is saturated whatever the rate asked."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = [t - before.get(tid, 0) for tid, t in after.items()]
    return max(used, default=0) / ticks / seconds if seconds > 0 else float("nan")


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {process.returncode}")
        try:
            httpx.get(url + "/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def _wrk(url: str, seconds: int, connections: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        [
            shutil.which("wrk") or "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def percentile(p: str) -> float:
        found = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if not found:
            return float("nan")
        value, unit = float(found.group(1)), found.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": rps,
        "p50": percentile("50"),
        "p99": percentile("99"),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


_TAILS = (("fsync", "journeykit_sink_fsync_seconds"), ("handled", "journeykit_request_seconds"))


def _buckets(url: str) -> dict[str, list[tuple[float, float]]]:
    """The cumulative buckets ``(upper bound, count)`` of the histograms in ``_TAILS``, now."""
    try:
        text = httpx.get(url + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    out = {}
    for name, metric in _TAILS:
        found = re.findall(rf'{metric}_bucket\{{le="([^"]+)"\}} ([\d.e+]+)', text)
        out[name] = [(float("inf") if le == "+Inf" else float(le), float(n)) for le, n in found]
    return out


def _tails(
    end: dict[str, list[tuple[float, float]]], start: dict[str, list[tuple[float, float]]]
) -> dict[str, float]:
    """The collector's fsync and request-handling p50, p99 and max in ms between two
    ``_buckets`` readings (upper bounds of their buckets), as ``fsync_p50`` ... ``handled_max``.

    Against a request's p50 and p99: with ``fsync=always`` a request waits for a group commit's
    fsync, so a disk whose fsync sometimes takes tens of ms puts that in the request's tail
    too, and one slow throughout a run (a p50 of 5 ms against the usual 1) slows every request.
    ``handled`` is ``journeykit_request_seconds``, from the handler's start to its answer:
    what the client saw beyond it waited outside the handler, in the event loop's queue
    before it or in the client. ``per_fsync``: requests handled per fsync, how many requests a
    group commit wrote on average (``commit_wait_seconds`` makes them more below saturation).
    """
    out = {f"{name}_{q}": float("nan") for name, _ in _TAILS for q in ("p50", "p99", "max")}
    totals: dict[str, float] = {}
    for name, _ in _TAILS:
        before = dict(start.get(name, []))
        counts = [(le, n - before.get(le, 0.0)) for le, n in end.get(name, [])]
        if not counts or counts[-1][1] <= 0:
            continue
        total = totals[name] = counts[-1][1]
        for q, share in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
            out[f"{name}_{q}"] = next(le for le, n in counts if n >= share * total) * 1000
    out["per_fsync"] = totals.get("handled", 0.0) / totals.get("fsync", float("nan"))
    return out


def _discard(output: Path) -> None:
    """Remove what a run wrote, and wait until the disk has settled.

    Left behind, a run's gigabytes slowed every later run: the floor measured after three
    collector runs whose 1.9 GB of files (fsynced, so clean pages) were kept cost 2.8 us per
    rich event, 1.6 us when each run's files were removed; a floor run after one whose 3 GB
    were still dirty cost 2x (``docs/benchmarks.md``, "Session 13"). Removed, their pages are
    reused by the next run instead of fresh memory, and no writeback of theirs is pending.
    """
    if output.is_dir():
        shutil.rmtree(output, ignore_errors=True)
    else:
        output.unlink(missing_ok=True)
    os.sync()


def _run(
    name: str,
    command: list[str],
    env: dict[str, str],
    args: argparse.Namespace,
    script: Path,
    connections: int,
    output: Path,
    paced: tuple[float, list[bytes]] | None = None,
) -> dict[str, float]:
    """One server under wrk with ``connections``, or under ``paced = (rate, requests)``; what
    it wrote (``output``, a file or a directory) is removed once it has stopped."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(url, process)
        before = _cpu_seconds(process.pid)
        threads, started = _thread_ticks(process.pid), time.monotonic()
        reading: threading.Timer | None = None
        warmed: dict[str, list[tuple[float, float]]] = {}
        if paced is None:
            result = _wrk(url + "/v1/batch", args.seconds, connections, script)
        else:
            rate, requests = paced
            # The histograms as the warm-up ends, so that their tails cover what p50/p99 do.
            reading = threading.Timer(WARM_SECONDS + 0.05, lambda: warmed.update(_buckets(url)))
            reading.start()
            outcome = run_paced(
                "127.0.0.1",
                port,
                requests.__getitem__,
                rate=rate,
                seconds=len(requests) / rate,
            )
            # The first WARM_SECONDS are the server's start-up (a fresh process: first calls,
            # caches, connections opened): reported apart, left out of p50/p99.
            warm = int(WARM_SECONDS * rate)
            result = {
                "seconds": len(requests) / rate,
                "rps": outcome.ok / (len(requests) / rate),
                "p50": outcome.percentile(50, first=warm),
                "p99": outcome.percentile(99, first=warm),
                "cold_p99": outcome.percentile(99, end=warm),
                "errors": float(outcome.failed),
            }
            if outcome.failures:
                print(f"  paced failures: {outcome.failures}", flush=True)
        result["cpu"] = _cpu_seconds(process.pid) - before
        result["busiest"] = _busiest(
            threads, _thread_ticks(process.pid), time.monotonic() - started
        )
        if reading is not None:
            reading.join()
            result.update(_tails(_buckets(url), warmed))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        _discard(output)
    events = result["rps"] * 100 * result.get("seconds", args.seconds)
    result["cpu_per_event_us"] = result["cpu"] / events * 1e6 if events else float("nan")
    print(
        f"{name:<44} {result['rps']:8.0f} req/s {result['rps'] * 100:9.0f} events/s  "
        f"p50 {result['p50']:6.1f} ms  p99 {result['p99']:6.1f} ms  "
        f"CPU {result['cpu_per_event_us']:5.1f} us/event  non-2xx {result['errors']:.0f}"
        + (
            f"  fsync p50 <= {result['fsync_p50']:.1f} ms, p99 <= {result['fsync_p99']:.1f} ms, "
            f"max <= {result['fsync_max']:.0f} ms; handled p50 <= {result['handled_p50']:.1f} ms, "
            f"p99 <= {result['handled_p99']:.0f} ms, max <= {result['handled_max']:.0f} ms; "
            f"{result['per_fsync']:.1f} requests per fsync"
            if "fsync_p99" in result
            else ""
        )
        + (f"  first {WARM_SECONDS:.0f} s p99 {result['cold_p99']:.1f} ms" if paced else "")
        + f"  busiest thread {result['busiest']:.0%}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes of every server, the floor's and the collector's (CPU is summed)",
    )
    parser.add_argument(
        "--inline-decisions",
        type=int,
        default=None,
        help="the collector's inline_decisions (subjects decided per batch answer)",
    )
    add_events_option(parser)
    parser.add_argument(
        "--attempts",
        type=int,
        default=1,
        help="repeat each mode's runs until the machine's speed held during the paced run",
    )
    parser.add_argument(
        "--decisions",
        choices=("both", "on", "off"),
        default="both",
        help="run the collector with decisions off, on (the default settings), or both",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    import base64

    auth = base64.b64encode(f"{KEY}:".encode()).decode()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "batch.lua"
        script.write_text(lua_script(auth, args.events))
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYKIT_")}
        uvicorn = [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--log-level",
            "warning",
            "--no-access-log",
            "--no-proxy-headers",  # as `collector serve` runs it
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            *(["--workers", str(args.workers)] if args.workers > 1 else []),
        ]
        floor_env = {**env, "PYTHONPATH": str(BENCH)}
        c = args.connections

        def run_floor(name: str, file: str, **extra: str) -> dict[str, float]:
            path = Path(tmp) / file
            floor_cmd = [*uvicorn, "_floor_app:app"]
            run_env = {**floor_env, "FLOOR_FILE": str(path), **extra}
            return _run(name, floor_cmd, run_env, args, script, c, path)

        os.sync()  # nothing written before this script pending during its first run
        floor = run_floor("floor: append body", "floor.ndjson")
        floor_sync = run_floor(
            "floor: append body + fsync per request", "floor-fsync.ndjson", FLOOR_FSYNC="1"
        )
        collector_env = {**env, "JOURNEYKIT_PSEUDONYM_KEY": PSEUDONYM_KEY}

        def collector(
            name: str,
            data: str,
            mode_env: dict[str, str],
            paced: tuple[float, list[bytes]] | None = None,
        ) -> dict[str, float]:
            # A data dir per run: wrk's messageIds repeat from run to run, and a shared dir
            # would answer the later runs' events as duplicates.
            data_dir = Path(tmp) / data
            command = [
                sys.executable,
                "-m",
                "journeykit.collector",
                "collector",
                "serve",
                "--data-dir",
                str(data_dir),
                "--write-key",
                KEY,
                "--consent-regime",
                "opt_out",
                "--fsync",
                "always",
                "--log-level",
                "warning",
                "--workers",
                str(args.workers),
            ]
            return _run(name, command, mode_env, args, script, c, data_dir, paced)

        modes = ("off", "on") if args.decisions == "both" else (args.decisions,)
        runs: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
        for mode in modes:
            mode_env = {
                **collector_env,
                "JOURNEYKIT_DECISIONS": "true" if mode == "on" else "false",
            }
            if args.inline_decisions is not None:
                mode_env["JOURNEYKIT_INLINE_DECISIONS"] = str(args.inline_decisions)
            name = f"collector, fsync=always, decisions {mode}"
            for attempt in range(1, args.attempts + 1):
                tag = f"{mode}-{attempt}"
                full = collector(name, f"{tag}-full", mode_env)
                # Open loop at 80% of this mode's saturated rate: the latency target.
                rate = 0.8 * full["rps"]
                count = max(int(rate * (WARM_SECONDS + args.seconds)), 1)
                requests = paced_requests(count, auth, tag, args.events)
                light_name = f"{name}, paced at {rate:.0f} req/s"
                light = collector(light_name, f"{tag}-light", mode_env, paced=(rate, requests))
                # Saturated again: this VM's speed drifts within minutes, and "80%" of a rate
                # the machine no longer sustains is an overload, whose p99 says nothing of the
                # code.
                again = collector(f"{name}, again", f"{tag}-again", mode_env)
                runs[mode] = (full, light, again)
                low, high = sorted((full["rps"], again["rps"]))
                if low >= (1 - HELD) * high:
                    break
                print(
                    f"  attempt {attempt}: the saturated rate moved {1 - low / high:.0%} "
                    f"around the paced run (the machine's speed did not hold)"
                    + ("; again" if attempt < args.attempts else "; no attempt held"),
                    flush=True,
                )
        # The floor again, after the collector's runs: this machine's speed drifts over the
        # minutes between them, and a ratio of two runs minutes apart moved with it (the same
        # code measured 7.6x-12.3x the floor in session 11, the floor's own CPU per event
        # 0.6-0.9 us). Both sides are the mean of a run before and a run after.
        floor_after = run_floor("floor: append body, again", "floor-again.ndjson")
    floor_cpu = (floor["cpu_per_event_us"] + floor_after["cpu_per_event_us"]) / 2
    print(
        f"\nfloor CPU per event: {floor['cpu_per_event_us']:.2f} us before the collector's runs, "
        f"{floor_after['cpu_per_event_us']:.2f} us after them; their mean {floor_cpu:.2f} us"
    )
    for mode, (full, light, again) in runs.items():
        saturated_cpu = (full["cpu_per_event_us"] + again["cpu_per_event_us"]) / 2
        print(
            f"\ndecisions {mode}: collector events/s: {full['rps'] * 100:,.0f} "
            f"({full['rps'] / floor['rps']:.2f}x the floor's requests/s, "
            f"{full['rps'] / floor_sync['rps']:.2f}x the fsync floor's)\n"
            f"CPU per accepted event: {saturated_cpu / floor_cpu:.1f}x the floor's at {c} "
            f"connections ({saturated_cpu:.2f} us, the mean of the saturated runs before and "
            f"after the paced one; against each floor run alone "
            f"{saturated_cpu / floor['cpu_per_event_us']:.1f}x and "
            f"{saturated_cpu / floor_after['cpu_per_event_us']:.1f}x), "
            f"{light['cpu_per_event_us'] / floor_cpu:.1f}x paced at 80% "
            f"(against the floor that fsyncs each request, as durable as fsync=always: "
            f"{saturated_cpu / floor_sync['cpu_per_event_us']:.1f}x and "
            f"{light['cpu_per_event_us'] / floor_sync['cpu_per_event_us']:.1f}x)\n"
            f"p99 paced at 80% of the saturated rate ({light['rps'] * 100:,.0f} events/s "
            f"answered, open loop, latency from when each request was due): "
            f"{light['p99']:.1f} ms (target <= 50); the paced rate was "
            f"{light['rps'] / full['rps']:.0%} of the saturated rate before it and "
            f"{light['rps'] / again['rps']:.0%} of the one after it, its busiest thread "
            f"{light['busiest']:.0%} of a core"
        )
    if len(runs) == 2:
        (off, off_light, _), (on, on_light, _) = runs["off"], runs["on"]
        print(
            f"\ndecisions on / off, CPU per event: "
            f"{on['cpu_per_event_us'] / off['cpu_per_event_us']:.2f} at {c} connections, "
            f"{on_light['cpu_per_event_us'] / off_light['cpu_per_event_us']:.2f} paced "
            f"(target <= 1.20); events/s {on['rps'] / off['rps']:.2f} "
            f"and {on_light['rps'] / off_light['rps']:.2f}"
        )


if __name__ == "__main__":
    main()
