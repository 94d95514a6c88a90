"""Realistic event sequences for the decision tests, in the shape the collector stores."""

from __future__ import annotations

import itertools
import socket
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from journeykit.collector.decisions import DecisionEngine

EngineFactory = Callable[..., DecisionEngine]

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0
DAY = 86400.0

_ids = itertools.count()


class Clock:
    """A wall clock the test moves: ``clock.advance(7 * DAY)``."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def track(
    subject: str, name: str, ts: float, anonymous: bool = False, **props: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "messageId": f"m-{next(_ids)}",
        "event": name,
        "properties": props,
        "timestamp": iso(ts),
        "receivedAt": iso(ts),
    }
    event["anonymousId" if anonymous else "userId"] = subject
    return event


def view(subject: str, pid: str, ts: float, category: str = "shoes", **kw: Any) -> dict[str, Any]:
    return track(subject, "Product Viewed", ts, product_id=pid, category=category, price=50.0, **kw)


def add(subject: str, pid: str, ts: float, price: float = 50.0, **kw: Any) -> dict[str, Any]:
    return track(
        subject,
        "Product Added",
        ts,
        product_id=pid,
        category="shoes",
        price=price,
        quantity=1,
        **kw,
    )


def order(
    subject: str,
    ts: float,
    total: float,
    products: list[str],
    currency: str = "USD",
    category: str = "shoes",
) -> dict[str, Any]:
    lines = [
        {"product_id": p, "category": category, "price": 10.0, "quantity": 1} for p in products
    ]
    return track(
        subject,
        "Order Completed",
        ts,
        order_id=f"o-{next(_ids)}",
        total=total,
        currency=currency,
        products=lines,
    )


def consent(subject: str, ts: float, personalization: bool) -> dict[str, Any]:
    return track(
        subject,
        "Consent Updated",
        ts,
        purposes={"analytics": True, "personalization": personalization},
        notice_version="2026-03",
        source="banner",
    )


def identify(user: str, anonymous: str, ts: float) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": f"m-{next(_ids)}",
        "userId": user,
        "anonymousId": anonymous,
        "traits": {},
        "timestamp": iso(ts),
    }


def alias(user: str, previous: str, ts: float) -> dict[str, Any]:
    return {
        "type": "alias",
        "messageId": f"m-{next(_ids)}",
        "userId": user,
        "previousId": previous,
        "timestamp": iso(ts),
    }


def start_redis(binary: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A redis-server on 127.0.0.1:``port`` without persistence, once it accepts connections."""
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError("redis-server did not start listening within 10 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
