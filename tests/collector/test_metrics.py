"""/metrics: every outcome the collector answers with is also counted for the operator."""

from __future__ import annotations

import re

import httpx
from helpers import RunningCollector


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
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
