"""The README's first command: a collector on embedded defaults, shop traffic through the SDK.

Starts ``journeykit collector serve`` as a child process, sends simulated shop sessions through
the SDK, prints what was sent, accepted and where it landed, and stops the collector, also when
anything fails on the way.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from pydantic import SecretStr
from simulate_traffic import simulate

from journeykit.consent import Pseudonymizer, PseudonymKey, verify_ledger
from journeykit.sdk import Client, Decision


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _any_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the collector exited with status {process.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the collector did not become healthy in time")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _count_lines(root: Path) -> tuple[int, Counter[str], list[Path]]:
    files = sorted(root.rglob("*.ndjson")) if root.exists() else []
    types: Counter[str] = Counter()
    lines = 0
    for path in files:
        with path.open("rb") as handle:
            for line in handle:
                lines += 1
                record = json.loads(line)
                types[record.get("event") or record.get("type", "?")] += 1
    return lines, types, files


def _decisions(client: Client, subjects: list[str]) -> list[Decision]:
    """Everyone's decision, once the collector has written its first item statistics.

    Profiles are written behind the answers and the "viewed/bought together" counts every few
    seconds; the demo waits (at most 10 s) until recommendations appear, as a page would show
    them a moment later.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = [client.decide(s, fresh=True) for s in subjects[:25]]
        if any(d.recommendations for d in probe):
            break
        time.sleep(0.5)
    return [client.decide(subject, fresh=True) for subject in subjects]


def _print_decisions(decisions: list[Decision]) -> None:
    """How the people were personalized, and a few of them with different outcomes."""
    granted = [d for d in decisions if d.personalization == "granted"]
    others = Counter(d.personalization for d in decisions if d.personalization != "granted")
    print(f"  decisions              {len(granted)} personalized, {dict(others) or 'none other'}")
    stages = Counter(d.stage for d in granted)
    print(f"    stages               {', '.join(f'{k} {v}' for k, v in stages.most_common())}")
    segments = Counter(s for d in granted for s in d.segments)
    print(f"    segments             {', '.join(f'{k} {v}' for k, v in segments.most_common(8))}")
    shown: set[tuple[str | None, str | None]] = set()
    for d in granted:
        action = d.next_best_action.action if d.next_best_action else None
        if (d.stage, action) in shown or len(shown) >= 5:
            continue
        shown.add((d.stage, action))
        recs = ", ".join(r.product_id for r in d.recommendations[:3]) or "-"
        reason = f" ({d.next_best_action.reason})" if d.next_best_action else ""
        print(f"    {d.subject[:20]:20} {d.stage}: {', '.join(d.segments) or '-'}")
        print(f"    {'':20} next: {action or '-'}{reason}; recommended: {recs}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200, help="shop sessions to simulate")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--port", type=int, default=8787)
    args = parser.parse_args()

    port = args.port if _port_free(args.port) else _any_free_port()
    url = f"http://127.0.0.1:{port}"
    before, _, _ = _count_lines(args.data_dir / "events")
    command = [
        sys.executable,
        "-m",
        "journeykit.collector",
        "collector",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(args.data_dir),
        "--log-level",
        "warning",
    ]
    print(f"== starting the collector on {url} (data under {args.data_dir}/)", flush=True)
    process = subprocess.Popen(command)
    try:
        _wait_healthy(url, process)
        key = (args.data_dir / "dev-write-key").read_text(encoding="utf-8").strip()
        print(f"== simulating {args.users} shop sessions through the SDK", flush=True)
        started = time.perf_counter()
        # The app shares the collector's development pseudonymization key, as a real
        # deployment shares JOURNEYKIT_PSEUDONYM_KEY, so both sides make the same pseudonyms.
        secret = (args.data_dir / "dev-pseudonym-key").read_text(encoding="utf-8").strip()
        pseudonymizer = Pseudonymizer([PseudonymKey(key_id="dev", secret=SecretStr(secret))])
        with Client(key, host=url, pseudonymizer=pseudonymizer) as client:
            summary = simulate(client, args.users)
            delivered = client.flush(timeout=60)
            stats = client.stats()
            elapsed = time.perf_counter() - started
            decisions = _decisions(client, summary.subjects)
    finally:
        _stop(process)
    after, types, files = _count_lines(args.data_dir / "events")
    rejected, _, _ = _count_lines(args.data_dir / "rejected")
    stored = after - before
    print("\n== journeykit demo summary")
    print(f"  sessions simulated     {summary.users}")
    print(f"  events recorded        {summary.events}  ({elapsed:.2f} s including delivery)")
    print(
        f"  delivered by the SDK   {stats.sent}  in {stats.requests} requests, "
        f"{stats.retries} retries"
    )
    print(f"  dropped by the SDK     {stats.dropped_total}  {dict(stats.dropped) or ''}")
    print(f"  stored by collector    {stored}  (rejected kept aside: {rejected})")
    top = ", ".join(f"{name} {count}" for name, count in types.most_common(6))
    print(f"  most frequent          {top}  (all runs in this data dir)")
    print(f"  NDJSON files           {args.data_dir / 'events'}/ ({len(files)} files, all runs)")
    for path in files[-3:]:
        print(f"                         {path}")
    ledger = args.data_dir / "consent" / "ledger.ndjson"
    if ledger.exists():
        report = verify_ledger(ledger)
        state = "intact" if report.ok else f"FAILED: {report.first_problem}"
        print(f"  consent ledger         {report.records} records, {state} ({ledger})")
    _print_decisions(decisions)
    print("  collector              stopped")
    ok = delivered and stats.dropped_total == 0 and stored == stats.sent == summary.events
    if not ok:
        print("!! not every event arrived; see the figures above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
