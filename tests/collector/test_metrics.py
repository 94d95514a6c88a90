"""/metrics: every outcome the collector answers with is also counted for the operator."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from helpers import RunningCollector, running_collector


def sample(text: str, metric: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(metric) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_outcomes_requests_and_fsyncs(collector: RunningCollector) -> None:
    batch = {
        "batch": [
            {"type": "track", "userId": "u", "event": "E", "messageId": "m1"},
            {"type": "track", "userId": "u", "event": "E", "messageId": "m1"},
            {"type": "track", "event": "no identity"},
        ]
    }
    httpx.post(collector.url + "/v1/batch", json=batch, headers=collector.auth())
    httpx.post(collector.url + "/v1/batch", json=batch, headers={"Authorization": "Basic eDo="})
    response = httpx.get(collector.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, "journeykit_events_total", outcome="accepted", reason="stored") == 1
    assert sample(text, "journeykit_events_total", outcome="duplicate", reason="seen") == 1
    assert (
        sample(text, "journeykit_events_total", outcome="rejected", reason="missing_identity") == 1
    )
    assert sample(text, "journeykit_requests_total", status="200") == 1
    assert sample(text, "journeykit_requests_total", status="401") == 1
    assert sample(text, "journeykit_request_seconds_count") == 2
    assert sample(text, "journeykit_batch_events_count") == 1
    assert sample(text, "journeykit_sink_fsync_seconds_count") >= 1


def test_metrics_time_each_profile_flush(tmp_path: Path) -> None:
    # Written through (no write-behind): each stored batch is one flush, timed.
    options = {"flush_interval_seconds": 0}
    with running_collector(tmp_path / "data", decision_options=options) as running:
        for n in range(3):
            event = {"type": "track", "userId": "u", "event": "E", "messageId": f"f{n}"}
            answer = httpx.post(
                running.url + "/v1/batch", json={"batch": [event]}, headers=running.auth()
            )
            assert answer.status_code == 200
        first = httpx.get(running.url + "/metrics").text
        again = httpx.get(running.url + "/metrics").text
    assert sample(first, "journeykit_decisions_flush_seconds_count") == 3
    assert sample(first, "journeykit_decisions_flush_seconds_sum") > 0
    assert sample(first, "journeykit_decisions", name="flushes") == 3
    # Each flush is observed once, however many scrapes follow.
    assert sample(again, "journeykit_decisions_flush_seconds_count") == 3
