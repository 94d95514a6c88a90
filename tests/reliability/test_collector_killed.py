"""The collector SIGKILLed and restarted under load while an app with a spool keeps tracking.

Guarantee: every event the app tracked (and the SDK queued) is on disk exactly once at the
end. Nothing may be dropped by the SDK, nothing may be missing from the NDJSON files, and a
batch the collector wrote just before it died (so the SDK never saw the answer and sends it
again) must be stored once: the restarted collector refills its dedup window from its files.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from helpers import PSEUDONYM_KEY, WRITE_KEY, ndjson_lines
from reliability_processes import CollectorProcess

from journeykit.sdk import Client, Drop

KILLS = 3
EVENTS_BETWEEN_KILLS = 400


def _app(client: Client, n: int, stop: threading.Event, tracked: list[str]) -> None:
    """An app thread: tracks steadily until told to stop, keeping the ids of queued events."""
    i = 0
    while not stop.is_set():
        result = client.track(f"user-{n}-{i % 50}", "Page Read", {"n": n, "i": i})
        # Queued or not: an event the SDK refused shows up in its drops, which must be none.
        tracked.append(str(result.message_id))
        i += 1
        if i % 5 == 0:
            # At most ~1,000 events/s for the two threads: load the collector and the spool
            # can keep up with on a busy 2-core runner. Faster than the SDK can replay a
            # backlog, the queue would fill (queue_full): a capacity limit, not this fault.
            time.sleep(0.01)


def _delivered(client: Client) -> int:
    stats = client.stats()
    return stats.sent + stats.replayed


def _wait_delivered(client: Client, target: int) -> None:
    deadline = time.monotonic() + 60
    while _delivered(client) < target:
        assert time.monotonic() < deadline, f"the SDK did not deliver {target}: {client.stats()}"
        time.sleep(0.02)


def test_sigkill_and_restart_under_load_lose_nothing_and_store_nothing_twice(
    tmp_path: Path, collector_process: Callable[..., CollectorProcess]
) -> None:
    collector = collector_process(tmp_path / "data")
    collector.start()
    drops: list[Drop] = []
    client = Client(
        WRITE_KEY,
        host=collector.url,
        spool_dir=tmp_path / "spool",
        pseudonym_key=PSEUDONYM_KEY,
        consent_regime="opt_out",
        on_drop=drops.append,
        flush_interval=0.02,
        # Short in-memory retries, so an outage goes to the spool (without one, these
        # settings drop batches as retries_exhausted: the spool is what this test relies on).
        max_retries=3,
        max_backoff=0.2,
        spool_after=0.3,
    )
    stop = threading.Event()
    tracked: list[list[str]] = [[], []]
    apps = [threading.Thread(target=_app, args=(client, n, stop, tracked[n])) for n in range(2)]
    for thread in apps:
        thread.start()
    try:
        for _ in range(KILLS):
            _wait_delivered(client, _delivered(client) + EVENTS_BETWEEN_KILLS)
            spooled = client.stats().spooled
            collector.kill()
            # Down until the SDK, retrying, has written a batch to its spool (bounded wait).
            deadline = time.monotonic() + 30
            while client.stats().spooled == spooled and time.monotonic() < deadline:
                time.sleep(0.02)
            collector.start()
        _wait_delivered(client, _delivered(client) + EVENTS_BETWEEN_KILLS)
    finally:
        stop.set()
        for thread in apps:
            thread.join(30)
    assert client.flush(timeout=120), client.stats()
    assert client.shutdown(timeout=30)
    stats = client.stats()
    collector.stop()

    assert drops == []
    assert dict(stats.dropped) == {}
    assert stats.spooled > 0, "no outage reached the spool: the test did not test it"
    assert stats.replayed == stats.spooled
    ids = tracked[0] + tracked[1]
    assert stats.queued == len(ids)
    stored = Counter(event["messageId"] for event in ndjson_lines(tmp_path / "data" / "events"))
    missing = set(ids) - set(stored)
    assert not missing, f"{len(missing)} of {len(ids)} tracked events are not on disk"
    assert set(stored) == set(ids)
    twice = [mid for mid, count in stored.items() if count > 1]
    assert not twice, f"{len(twice)} events stored more than once"
