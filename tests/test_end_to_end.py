"""The SDK delivering to a real collector: everything recorded is stored exactly once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import RunningCollector, free_port
from simulate_traffic import simulate  # examples/ is on the tests' path

from journeykit.sdk import Client

PSEUDONYM_KEY = "e2e-pseudonym-key-0123456789"
DELIVERY_ONLY = {"consent_regime": "opt_out", "pseudonymize": False}


def test_simulated_shop_traffic_arrives_whole(collector: RunningCollector) -> None:
    with Client(
        collector.key, host=collector.url, batch_size=50, pseudonym_key=PSEUDONYM_KEY
    ) as client:
        summary = simulate(client, users=60)
        assert client.flush(timeout=30)
        stats = client.stats()
    assert stats.dropped_total == 0
    assert stats.sent == summary.events
    stored = collector.events
    assert len(stored) == summary.events
    assert len({e["messageId"] for e in stored}) == summary.events
    assert collector.rejected == []
    kinds = {e.get("event") or e["type"] for e in stored}
    assert {"page", "Product Viewed", "Product Added", "Order Completed"} <= kinds
    assert "Consent Updated" in kinds
    emails = [e["traits"]["email"] for e in stored if e["type"] == "identify"]
    assert emails
    assert all(email.startswith("hmac-sha256:k1:") for email in emails)
    assert "@example.com" not in str(stored)


def test_wrong_key_is_reported_as_drops_not_raised(collector: RunningCollector) -> None:
    drops = []
    with Client("not-the-key", host=collector.url, on_drop=drops.append, **DELIVERY_ONLY) as client:
        assert client.track("u1", "E")
        client.flush(timeout=10)
    assert [d.reason for d in drops] == ["http_error"]
    assert "401" in drops[0].detail
    assert collector.events == []


def test_collector_down_counts_retries_then_drops(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    with Client("k", host=url, max_retries=2, max_backoff=0.05, **DELIVERY_ONLY) as client:
        client.track("u1", "E")
        client.flush(timeout=10)
        stats = client.stats()
    assert stats.retries == 2
    assert stats.dropped == {"retries_exhausted": 1}


def test_exit_without_flush_delivers_everything(collector: RunningCollector) -> None:
    # Segment's client lost 38% of such events and RudderStack's 90% (ANCHORS.md).
    script = (
        "import sys\n"
        "from journeykit.sdk import Client\n"
        "client = Client(sys.argv[1], host=sys.argv[2], exit_timeout=10,\n"
        "                consent_regime='opt_out', pseudonymize=False)\n"
        "for i in range(1000):\n"
        "    client.track('u1', 'Exit Test', {'i': i})\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, collector.key, collector.url], check=True, timeout=60
    )
    assert sorted(e["properties"]["i"] for e in collector.events) == list(range(1000))


def test_a_client_collected_before_exit_still_delivers_what_it_queued(
    collector: RunningCollector,
) -> None:
    """A client nobody holds is garbage-collected; its worker still gets ``exit_timeout`` at
    exit for what was queued, rather than dying with the interpreter as a daemon thread."""
    script = (
        "import gc, sys\n"
        "from journeykit.sdk import Client\n"
        "def send():\n"
        "    client = Client(sys.argv[1], host=sys.argv[2], exit_timeout=10, flush_interval=30,\n"
        "                    consent_regime='opt_out', pseudonymize=False)\n"
        "    for i in range(300):\n"
        "        client.track('u1', 'Collected', {'i': i})\n"
        "send()\n"
        "gc.collect()\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, collector.key, collector.url], check=True, timeout=60
    )
    assert sorted(e["properties"]["i"] for e in collector.events) == list(range(300))
