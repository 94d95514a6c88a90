"""The traffic of three people, for the data-subject request tests (tests/collector/dsr)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import PSEUDONYM_KEY, WRITE_KEY, RunningCollector

from journeykit.consent import Pseudonymizer


def event(kind: str, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "messageId": f"m-{n}",
        "timestamp": f"2026-11-0{1 + n % 9}T10:00:00Z",
        **fields,
    }


def traffic() -> list[dict[str, Any]]:
    """Alice browses anonymously, logs in (identify with her email), buys; Bob and Carol too."""
    return [
        event("page", 1, anonymousId="anon-alice", name="Home"),
        event(
            "track",
            2,
            anonymousId="anon-alice",
            event="Product Viewed",
            properties={"product_id": "p1"},
        ),
        event(
            "identify",
            3,
            userId="alice",
            anonymousId="anon-alice",
            traits={"email": "Alice@Example.com", "plan": "pro"},
        ),
        event(
            "track",
            4,
            userId="alice",
            event="Order Completed",
            properties={"order_id": "o1", "total": 42},
        ),
        event("alias", 5, userId="alice-2", previousId="alice"),
        event(
            "track", 6, userId="alice-2", event="Product Viewed", properties={"product_id": "p2"}
        ),
        event(
            "track",
            7,
            userId="bob",
            event="Product Viewed",
            properties={"product_id": "p1", "note": "alicex"},
        ),
        event("identify", 8, userId="bob", traits={"email": "bob@example.com"}),
        event("track", 9, userId="carol", anonymousId="anon-carol", event="Signed Up"),
        event("track", 10, anonymousId="anon-bob-2", event="Product Viewed"),
    ]


def invalid_for_alice() -> dict[str, Any]:
    # A track without an event name: rejected, and kept in rejected/ with Alice's id.
    return {"type": "track", "messageId": "m-bad", "userId": "alice", "properties": {}}


@dataclass
class Shop:
    data_dir: Path
    pseudonymizer: Pseudonymizer
    collector: RunningCollector


def dsr(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``journeykit dsr ARGS --data-dir DATA_DIR`` in a child process, with the tests' keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYKIT_")}
    env |= {"JOURNEYKIT_PSEUDONYM_KEY": PSEUDONYM_KEY, "JOURNEYKIT_WRITE_KEYS": WRITE_KEY}
    return subprocess.run(
        [sys.executable, "-m", "journeykit.collector", "dsr", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
