"""The collector's disk refuses writes: 503 with Retry-After, the SDK retries, nothing is lost.

How the disk is made to refuse: ``RLIMIT_FSIZE``, set on the running collector process from
outside with ``prlimit(2)`` (``resource.prlimit``). Past the limit, ``write(2)`` fails with
``EFBIG``, as it fails with ``ENOSPC`` on a full disk: the same ``OSError`` path in the sink.
Python ignores ``SIGXFSZ`` (it would otherwise kill the process), so the collector sees the
error. Raising the limit again is the operator freeing space. This works unprivileged and as
root (CI), needs no mount (a loop-mounted tiny filesystem needs root) and, unlike
``chmod -w``, is not bypassed by root. Linux only (``prlimit``).
"""

from __future__ import annotations

import resource
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import PSEUDONYM_KEY, WRITE_KEY, basic_auth, ndjson_lines
from reliability_processes import CollectorProcess

from journeykit.sdk import Client, Drop

ROOM = 8 * 1024  # bytes the collector's file may still grow by while the "disk is full"
EVENTS = 1_000  # about 400 KB of NDJSON: far past the room left


def _probe(url: str, tag: str) -> tuple[httpx.Response, list[str]]:
    """One batch of about 55 KB, so it cannot fit in the room left."""
    ids = [f"probe-{tag}-{i}" for i in range(250)]
    batch = [
        {"type": "track", "userId": "probe", "event": "Probe", "messageId": mid, "properties": {}}
        for mid in ids
    ]
    answer = httpx.post(url + "/v1/batch", json={"batch": batch}, headers=basic_auth(WRITE_KEY))
    return answer, ids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit(2) is Linux only")
def test_a_full_disk_answers_503_and_the_sdk_delivers_everything_once_it_recovers(
    tmp_path: Path, collector_process: Callable[..., CollectorProcess]
) -> None:
    data = tmp_path / "data"
    collector = collector_process(
        data, {"JOURNEYKIT_DECISIONS": "false", "JOURNEYKIT_RETRY_AFTER_SECONDS": "1"}
    )
    collector.start()
    drops: list[Drop] = []
    client = Client(
        WRITE_KEY,
        host=collector.url,
        pseudonym_key=PSEUDONYM_KEY,
        consent_regime="opt_out",
        on_drop=drops.append,
        flush_interval=0.05,
    )
    try:
        tracked = [str(client.track("early", "Page Read", {"i": i}).message_id) for i in range(50)]
        assert client.flush(timeout=30)
        # The disk fills up: the file may grow by ROOM bytes more.
        # The file the sink appends to (the largest, should an hour have begun meanwhile).
        written = max((data / "events").rglob("*.ndjson"), key=lambda p: p.stat().st_size)
        limit = written.stat().st_size + ROOM
        resource.prlimit(collector.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        tracked += [
            str(client.track(f"user-{i % 20}", "Page Read", {"i": i}).message_id)
            for i in range(EVENTS)
        ]
        deadline = time.monotonic() + 60
        while client.stats().retries == 0:  # the first 503 made the SDK retry
            assert time.monotonic() < deadline, f"the disk never refused: {client.stats()}"
            time.sleep(0.05)

        refused, _ = _probe(collector.url, "full")
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        body: dict[str, Any] = refused.json()
        assert body["error"]["code"] == "storage_unavailable"
        # What was written of a refused batch was cut off again: every line is whole JSON.
        during = ndjson_lines(data / "events")
        assert not {e["messageId"] for e in during} & {f"probe-full-{i}" for i in range(250)}
        assert set(tracked[:50]) <= {e["messageId"] for e in during}
        assert written.stat().st_size <= limit
        # Readiness says so too, so a load balancer can take this collector out.
        ready = httpx.get(collector.url + "/readyz")
        assert ready.status_code == 503
        assert "last write failed" in ready.json()["error"]["message"]

        deadline = time.monotonic() + 60
        while client.stats().retries < 3:  # the outage outlasts a few of the SDK's retries
            assert time.monotonic() < deadline, f"the SDK stopped retrying: {client.stats()}"
            time.sleep(0.05)

        # The operator frees space; the SDK's next retry (Retry-After: 1) goes through.
        resource.prlimit(
            collector.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )
        assert client.flush(timeout=90), client.stats()
        accepted, probe_ids = _probe(collector.url, "after")
        assert accepted.status_code == 200, accepted.text
        assert httpx.get(collector.url + "/readyz").status_code == 200
    finally:
        client.shutdown(timeout=10)
    stats = client.stats()
    collector.stop()

    assert drops == []
    assert dict(stats.dropped) == {}
    assert stats.sent == len(tracked) == 50 + EVENTS
    assert stats.retries >= 3
    stored = Counter(e["messageId"] for e in ndjson_lines(data / "events"))
    assert set(stored) == set(tracked) | set(probe_ids)
    assert max(stored.values()) == 1


def _consent(user: str, n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": "Consent Updated",
        "messageId": f"consent-{user}-{n}",
        "properties": {"purposes": {"analytics": True}},
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit(2) is Linux only")
def test_a_consent_the_ledger_refused_is_recorded_by_the_retry(
    tmp_path: Path, collector_process: Callable[..., CollectorProcess]
) -> None:
    # The choice is applied in memory while the request is checked and appended when it is
    # written: a retry of a refused append must record it, or it is lost at the next restart.
    data = tmp_path / "data"
    env = {"JOURNEYKIT_DECISIONS": "false", "JOURNEYKIT_CONSENT_REGIME": "opt_in"}
    collector = collector_process(data, env)
    collector.start()
    auth = basic_auth(WRITE_KEY)

    def send(*events: dict[str, Any]) -> httpx.Response:
        return httpx.post(collector.url + "/v1/batch", json={"batch": list(events)}, headers=auth)

    assert send(*[_consent(f"other-{i}", 0) for i in range(20)]).status_code == 200
    ledger = data / "consent" / "ledger.ndjson"
    room = ledger.stat().st_size + 64  # less than one more record
    resource.prlimit(collector.pid, resource.RLIMIT_FSIZE, (room, resource.RLIM_INFINITY))
    refused = send(_consent("u1", 0))
    assert refused.status_code == 503, refused.text
    resource.prlimit(
        collector.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    )
    retried = send(_consent("u1", 0))
    assert retried.status_code == 200, retried.text
    assert retried.json()["accepted"] == 1
    page = {"type": "page", "userId": "u1", "name": "Home", "messageId": "page-1"}
    assert send(page).json()["accepted"] == 1
    collector.stop()

    collector.start()  # the consent in force is the ledger's
    later = send({**page, "messageId": "page-2"}).json()
    assert (later["accepted"], later["dropped"]) == (1, {})
