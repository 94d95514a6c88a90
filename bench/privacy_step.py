"""Benchmark: the collector's privacy step per accepted event, fused path vs reference path.

Run from the repository root:  python bench/privacy_step.py [--batches N] [--nogc]

Events as the collector hands them to ``PrivacyStep.process`` (after validation and
enrichment): a track with a userId, ``properties`` {product_id, price, currency} and
``context`` {ip, userAgent}, no consent signal, in batches of 100, default pseudonymization
rules. Cases: opt-out with nobody having chosen (the usual case), opt-out where every subject
has a recorded choice, opt-in where every subject granted analytics only (so the marketing
fields are stripped), and three with ``Sec-GPC: 1`` on every request (opt-out): 100 subjects
whose states hold the request's denial already (the same request time as before: nothing to
merge), 100 subjects with a new request time per request (each state merges the header once:
its latest signal moves on), and one browser per request (one userId and anonymousId, a new
request time: the first event merges). Each case times ``process`` and ``process_reference``
on the same batches, alternating, in the same run; the figure is CPU time per event
(process_time) and the ratio reference / fused. The GC is on unless ``--nogc``, as in a server.

To compare with another version of the code, run this script with that version first on
``PYTHONPATH`` (a ``journeykit`` folder holding its ``sdk``, ``collector``, ``consent``).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from journeykit.collector.privacy import PrivacyStep
from journeykit.collector.suppression import SuppressionList
from journeykit.consent import ConsentLedger, Pseudonymizer, PseudonymKey, Regime

BATCH = 100
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
KEYS = Pseudonymizer(
    [PseudonymKey(key_id="k1", secret=SecretStr("bench-pseudonym-key-0123456789"))]
)


def batch(c: int, browser: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """Events of 100 subjects, or of one browser (one userId and anonymousId)."""
    return [
        (
            i,
            {
                "type": "track",
                "userId": f"user-{c}" if browser else f"user-{i}",
                **({"anonymousId": f"device-{c}"} if browser else {}),
                "event": "Product Viewed",
                "messageId": f"m-{c}-{i}",
                "properties": {"product_id": f"p{i}", "price": 19.9, "currency": "EUR"},
                "context": {"ip": "203.0.113.7", "userAgent": "bench"},
                "receivedAt": "2026-03-01T12:00:00.000Z",
                "_source": "default",
                "timestamp": "2026-03-01T12:00:00.000Z",
            },
        )
        for i in range(1, BATCH + 1)
    ]


def consents(**purposes: bool) -> list[tuple[int, dict[str, Any]]]:
    return [
        (
            i,
            {
                "type": "track",
                "userId": f"user-{i}",
                "event": "Consent Updated",
                "properties": {"purposes": purposes},
                "timestamp": "2026-03-01T11:00:00Z",
            },
        )
        for i in range(1, BATCH + 1)
    ]


def step(data_dir: Path, regime: Regime) -> PrivacyStep:
    return PrivacyStep(
        ledger=ConsentLedger(data_dir / "ledger.ndjson"),
        pseudonymizer=KEYS,
        regime=regime,
        suppression=SuppressionList(data_dir / "suppressions.sqlite3", KEYS),
    )


def run(
    name: str,
    privacy: PrivacyStep,
    headers: dict[str, str],
    batches: int,
    *,
    clock: Callable[[], datetime] = lambda: NOW,
    browser: bool = False,
) -> None:
    """Time both paths on the same batches; ``clock`` gives each request's time."""
    work = [batch(c, browser) for c in range(batches)]
    paths = {"reference": privacy.process_reference, "fused": privacy.process}
    samples: dict[str, list[float]] = {k: [] for k in paths}
    for process in paths.values():  # warm up: memos, caches, the first GC passes
        for events in work:
            process(events, headers, clock())
    for _ in range(5):
        for label, process in paths.items():
            times = [clock() for _ in work]  # made outside the timed loop
            start = time.process_time()
            for events, at in zip(work, times, strict=True):
                process(events, headers, at)
            samples[label].append((time.process_time() - start) / (batches * BATCH) * 1e6)
    ref, fused = (statistics.median(samples[k]) for k in paths)
    print(f"{name:<38} reference {ref:6.2f} us  fused {fused:6.2f} us  ratio {ref / fused:4.1f}x")


def ticks() -> Callable[[], datetime]:
    """A clock for requests: one millisecond later at every call."""
    counter: Iterator[int] = itertools.count(1)
    return lambda: NOW + timedelta(milliseconds=next(counter))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--nogc", action="store_true")
    args = parser.parse_args()
    if args.nogc:
        gc.disable()
    print(
        f"python {platform.python_version()}, gc {'off' if args.nogc else 'on'}, "
        f"{args.batches} batches of {BATCH}, CPU us per event (median of 5)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        steps = [
            step(root / name, Regime.OPT_IN if name == "c" else Regime.OPT_OUT) for name in "abcdef"
        ]
        nobody, chose, opt_in, held, moving, browser = steps
        chose.process(consents(analytics=True, marketing=True), {}, NOW)
        opt_in.process(consents(analytics=True), {}, NOW)
        # Fewer batches with the header: its reference path costs ~4 times more per event.
        n, gpc, later = args.batches // 4, {"sec-gpc": "1"}, ticks()
        run("opt-out, nobody chose", nobody, {}, args.batches)
        run("opt-out, every subject chose", chose, {}, args.batches)
        run("opt-in, analytics only (strip)", opt_in, {}, args.batches)
        run("Sec-GPC: 1, states hold it already", held, gpc, n)
        run("Sec-GPC: 1, new request time", moving, gpc, n, clock=later)
        run("Sec-GPC: 1, one browser per request", browser, gpc, n, clock=later, browser=True)
        for privacy in steps:
            privacy.close()


if __name__ == "__main__":
    main()
