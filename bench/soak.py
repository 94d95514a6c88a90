"""A soak run: the collector under steady SDK traffic for minutes, watched for leaks (issue 7).

Starts ``journeykit collector serve`` (``--workers`` processes, ``fsync=always``) on
127.0.0.1 with a fresh data dir, and ``--senders`` threads, each with its own SDK ``Client``,
sending typed shop events as fast as the collector takes them (each sender waits while its
queue is over half full, so the run measures the collector, not queue overflow; consent granted
up front; an identify with a pseudonymized email every 100 events). Every ``--every`` seconds it
prints one row: events accepted, and per second over the interval, the collector's resident
memory and open files (summed over its processes, from /proc), NDJSON bytes on disk, and the
SDK's queued and dropped counts. At the end it checks that what the SDK reported sent equals
the lines on disk.

    python bench/soak.py                    # 10 minutes, the issue's soak
    python bench/soak.py --minutes 1 --every 5

Memory or open files that climb row after row, rather than levelling off, are the leak signal.
Not run in CI: it takes minutes by design.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from journeykit.consent import Purpose
from journeykit.sdk import Client, ClientStats
from journeykit.sdk.events import ProductViewed

_QUEUE = 20_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tree(pid: int) -> list[int]:
    """``pid`` and its children (uvicorn's worker processes)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            out.extend(_tree(int(child)))
    return out


def _rss_and_files(pid: int) -> tuple[float, int]:
    rss = 0
    files = 0
    for proc in _tree(pid):
        try:
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
            files += sum(1 for _ in Path(f"/proc/{proc}/fd").iterdir())
        except FileNotFoundError:
            continue  # a worker that just exited
    return rss / 1024, files


def _disk(data_dir: Path) -> tuple[int, int]:
    size = lines = 0
    for path in (data_dir / "events").rglob("*.ndjson"):
        data = path.read_bytes()
        size += len(data)
        lines += data.count(b"\n")
    return size, lines


def _dropped(stats: list[ClientStats]) -> int:
    return sum(sum(s.dropped.values()) for s in stats)


def _sender(url: str, key: str, pseudonym_key: str, stop: threading.Event, n: int) -> Client:
    client = Client(
        key, host=url, pseudonym_key=pseudonym_key, max_queue_size=_QUEUE, flush_interval=0.2
    )

    def run() -> None:
        i = 0
        while not stop.is_set():
            user = f"soak-{n}-{i % 5000}"
            if i < 5000:
                client.consent(user, granted=[Purpose.ANALYTICS, Purpose.PERSONALIZATION])
            if i % 100 == 0:  # traits.email is pseudonymized before it leaves the app
                client.identify(user, {"email": f"{user}@example.com"})
            queued = client.track(
                user, ProductViewed(product_id=f"p{i % 500}", price=19.9, category="shoes")
            )
            i += 1
            if not queued:
                time.sleep(0.001)
            while i % 200 == 0 and client.stats().pending > _QUEUE // 2 and not stop.is_set():
                time.sleep(0.005)  # back-pressure: let the worker catch up

    threading.Thread(target=run, daemon=True, name=f"soak-sender-{n}").start()
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between rows")
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    key, pseudonym_key = secrets.token_hex(16), secrets.token_hex(32)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        data_dir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYKIT_")}
        env |= {
            "JOURNEYKIT_WRITE_KEYS": key,
            "JOURNEYKIT_PSEUDONYM_KEY": pseudonym_key,
            "JOURNEYKIT_CONSENT_REGIME": "opt_in",
        }
        command = [
            *(sys.executable, "-m", "journeykit.collector", "collector", "serve"),
            *("--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)),
            *("--workers", str(args.workers), "--log-level", "warning"),
        ]
        server = subprocess.Popen(command, env=env)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the collector did not start")
                time.sleep(0.1)
            stop = threading.Event()
            clients = [_sender(url, key, pseudonym_key, stop, n) for n in range(args.senders)]
            print(f"soak: {args.minutes} min, {args.senders} senders, {args.workers} worker(s)")
            print("   t(s)   accepted      ev/s  rss(MB)  files  disk(MB)  queued  dropped")
            start = time.monotonic()
            last_sent, last_t = 0, start
            while (now := time.monotonic()) - start < args.minutes * 60:
                time.sleep(min(args.every, args.minutes * 60 - (now - start)))
                now = time.monotonic()
                stats = [c.stats() for c in clients]
                sent = sum(s.sent for s in stats)
                rss, files = _rss_and_files(server.pid)
                size, _ = _disk(data_dir)
                print(
                    f"{now - start:7.0f} {sent:10,} {(sent - last_sent) / (now - last_t):9,.0f}"
                    f" {rss:8.1f} {files:6d} {size / 2**20:9.1f}"
                    f" {sum(s.pending for s in stats):7,} {_dropped(stats):8,}"
                )
                last_sent, last_t = sent, now
            stop.set()
            for client in clients:
                client.shutdown(timeout=30)
            stats = [c.stats() for c in clients]
            sent = sum(s.sent for s in stats)
            _, lines = _disk(data_dir)
            dropped = _dropped(stats)
            print(f"end: SDK sent {sent:,}, lines on disk {lines:,}, SDK dropped {dropped:,}")
            if lines != sent:
                raise SystemExit("the lines on disk differ from what the SDK reported sent")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)


if __name__ == "__main__":
    main()
