"""``GET /v1/decisions/{subject}`` over HTTP against a floor measured in the same run.

    python bench/decisions_http.py [--profiles 100000] [--backend sqlite|redis|both]
                                   [--connections 2,8,32] [--seconds 10] [--workers 1]
                                   [--baseline DIR] [--rounds 1]

Needs ``wrk`` (Debian: ``apt-get install wrk``) and, for Redis, ``redis-server``. Builds
``--profiles`` profiles with bench/decisions.py's generator (about 4 events each) through the
public engine API (``DecisionEngine.update`` then ``flush``: about 10 s for 100,000 profiles,
at least twice faster than posting the same events to the collector, which would also write
them as NDJSON) into a data
dir (SQLite) or a redis-server this script starts on a free 127.0.0.1 port, and computes the
RFM cut points. Then it starts the real collector (``python -m journeykit.collector collector
serve``, ``--consent-regime opt_out`` so personalization is granted without consent records)
on 127.0.0.1 and drives ``GET /v1/decisions/user-<random existing n>`` with wrk (a Lua script
picks the subjects) at each connection count, after a 2 s warm-up. Printed: requests/s, p50
and p99 latency, server CPU time per request (the collector process and its workers, from
/proc; Redis's own CPU beside it), and the ratios to the floor: the bare Starlette endpoint of
bench/_floor_app.py answering a fixed 1 KB JSON under the same uvicorn settings (uvloop,
httptools, no access log, ``--workers`` the same).

``--baseline DIR`` compares with other code in the same session: ``DIR`` is put on the
collector's ``PYTHONPATH`` for the "baseline" runs (a folder holding ``journeykit/`` with
``sdk``, ``collector`` and ``consent``, e.g. a ``git archive HEAD`` copy with three
symlinks), and baseline and current collectors alternate ``--rounds`` times on the same
profiles, each printed, then the medians and their ratio. The machine is noisy: only figures
of one session, taken in turns, compare.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx
from _workload import WRK_THREAD_IDS
from collector_throughput import KEY, PSEUDONYM_KEY, _free_port, _wait, _wrk
from decisions import _batches, redis_server

from journeykit.collector.decisions import DecisionEngine, DecisionSettings

BENCH = Path(__file__).resolve().parent

LUA = (
    WRK_THREAD_IDS
    + r"""
function init(args)
  math.randomseed(os.time() * 97 + tid)
end
request = function()
  return wrk.format("GET", "/v1/decisions/user-" .. math.random(0, PROFILES - 1),
                    {["Authorization"] = "Basic " .. AUTH})
end
"""
)


def _tree_cpu(pid: int) -> float:
    """utime + stime in seconds of ``pid`` and every live descendant (uvicorn's workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(cpu.get(p, 0.0) for p in tree)


def build(settings: DecisionSettings, data_dir: Path, profiles: int) -> None:
    started = time.perf_counter()
    engine = DecisionEngine.open(settings, data_dir)
    events = 0
    for batch in _batches(profiles):
        engine.update(batch)
        events += len(batch)
    if not engine.flush():
        raise SystemExit(f"the final flush failed: {dict(engine.stats)}")
    engine.refresh_rfm()
    engine.close()
    print(
        f"built {profiles:,} profiles ({events:,} events, {settings.backend}) through "
        f"DecisionEngine.update in {time.perf_counter() - started:.0f} s",
        flush=True,
    )


def _median(rounds: list[dict[int, dict[str, float]]]) -> dict[int, dict[str, float]]:
    """Per connection count, the median of each figure over the rounds."""
    return {
        c: {key: statistics.median(r[c][key] for r in rounds) for key in rounds[0][c]}
        for c in rounds[0]
    }


@contextmanager
def server(command: list[str], env: dict[str, str]) -> Iterator[tuple[str, int]]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([*command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
    try:
        _wait(url, process)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def drive(
    name: str,
    url: str,
    pid: int,
    redis_pid: int | None,
    args: argparse.Namespace,
    script: Path,
) -> dict[int, dict[str, float]]:
    auth = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
    answer = httpx.get(f"{url}/v1/decisions/user-0", headers=auth, timeout=10)
    if answer.status_code != 200 or answer.json()["personalization"] != "granted":
        raise SystemExit(f"{name}: GET /v1/decisions/user-0 -> {answer.status_code} {answer.text}")
    _wrk(url, 2, max(args.connections), script)  # warm-up: caches, connections, pages
    results = {}
    for c in args.connections:
        before, redis_before = _tree_cpu(pid), _tree_cpu(redis_pid) if redis_pid else 0.0
        r = _wrk(url, args.seconds, c, script)
        requests = r["rps"] * args.seconds
        r["cpu_us"] = (_tree_cpu(pid) - before) / requests * 1e6
        redis_us = (_tree_cpu(redis_pid) - redis_before) / requests * 1e6 if redis_pid else 0
        r["redis_us"] = redis_us
        results[c] = r
        extra = f" + redis {redis_us:5.1f}" if redis_pid else ""
        print(
            f"{name:<24} {c:>4} conn. {r['rps']:8.0f} req/s  p50 {r['p50']:6.2f} ms  "
            f"p99 {r['p99']:6.2f} ms  server CPU {r['cpu_us']:6.1f}{extra} µs/req  "
            f"non-2xx {r['errors']:.0f}",
            flush=True,
        )
    return results


def _redis_pid(url: str) -> int:
    import redis

    return int(redis.Redis.from_url(url).info("server")["process_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "redis", "both"], default="both")
    parser.add_argument(
        "--connections",
        default="2,8,32",
        help="comma-separated wrk -c values (>= 2: two wrk threads)",
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--baseline", type=Path, default=None, help="PYTHONPATH of the code to compare against"
    )
    parser.add_argument("--rounds", type=int, default=1, help="baseline/current alternations")
    args = parser.parse_args()
    args.connections = [int(c) for c in args.connections.split(",")]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    auth = base64.b64encode(f"{KEY}:".encode()).decode()
    backends = ["sqlite", "redis"] if args.backend == "both" else [args.backend]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYKIT_")}
    workers = ["--workers", str(args.workers)]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        script = tmp / "decisions.lua"
        script.write_text(f'AUTH = "{auth}"\nPROFILES = {args.profiles}\n' + LUA)
        uvicorn = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--log-level",
                   "warning", "--no-access-log", "--no-proxy-headers", "--loop", "uvloop",
                   "--http", "httptools", *(workers if args.workers > 1 else [])]  # fmt: skip
        floor_env = {**env, "PYTHONPATH": str(BENCH)}
        print(f"profiles {args.profiles:,}, workers {args.workers}, {args.seconds} s per run")
        with server([*uvicorn, "_floor_app:app"], floor_env) as (url, pid):
            floor = drive("floor: fixed 1 KB JSON", url, pid, None, args, script)
        runs: dict[str, dict[int, dict[str, float]]] = {}
        versions = [("baseline", args.baseline), ("current", None)] if args.baseline else []
        versions = versions or [("current", None)]
        for backend in backends:
            data = tmp / backend
            with redis_server(tmp) if backend == "redis" else nullcontext("") as redis_url:
                settings = DecisionSettings(backend=backend, redis_url=redis_url or None)
                build(settings, data, args.profiles)
                collector_env = {**env, "JOURNEYKIT_PSEUDONYM_KEY": PSEUDONYM_KEY}
                if redis_url:
                    collector_env |= {
                        "JOURNEYKIT_PROFILE_STORE": "redis",
                        "JOURNEYKIT_REDIS_URL": redis_url,
                    }
                command = [sys.executable, "-m", "journeykit.collector", "collector", "serve",
                           "--data-dir", str(data), "--write-key", KEY, "--consent-regime",
                           "opt_out", "--log-level", "warning", *workers]  # fmt: skip
                redis_pid = _redis_pid(redis_url) if redis_url else None
                rounds: dict[str, list[dict[int, dict[str, float]]]] = {}
                for _ in range(args.rounds if args.baseline else 1):
                    for version, path in versions:
                        run_env = {**collector_env, "PYTHONPATH": str(path)} if path else None
                        with server(command, run_env or collector_env) as (url, pid):
                            name = f"{version}, {backend}" if args.baseline else backend
                            result = drive(name, url, pid, redis_pid, args, script)
                            rounds.setdefault(version, []).append(result)
                for version, results in rounds.items():
                    runs[f"{backend} ({version})" if args.baseline else backend] = _median(results)
    print()
    for backend, results in runs.items():
        for c, r in results.items():
            f = floor[c]
            print(
                f"{backend} at {c} conn.: {r['rps']:.0f} req/s, {r['cpu_us']:.0f} µs CPU/req "
                f"(median of rounds); {r['rps'] / f['rps']:.2f}x the floor's requests/s, "
                f"{r['cpu_us'] / f['cpu_us']:.1f}x its CPU per request; "
                f"target >= 2,000 req/s: {'met' if r['rps'] >= 2000 else 'NOT met'}"
            )
    for backend in backends if args.baseline else ():
        old, new = runs[f"{backend} (baseline)"], runs[f"{backend} (current)"]
        for c in args.connections:
            print(
                f"{backend} at {c} conn.: current/baseline requests/s "
                f"{new[c]['rps'] / old[c]['rps']:.2f}x, CPU per request "
                f"{new[c]['cpu_us'] / old[c]['cpu_us']:.2f}x"
            )


if __name__ == "__main__":
    main()
