"""Drops are logged without flooding: one line per reason per interval, with the count between."""

from __future__ import annotations

import logging

import pytest
from helpers import WRITE_KEY

from journeykit.sdk import Client, Drop


def test_an_overload_logs_one_line_and_counts_every_drop(caplog: pytest.LogCaptureFixture) -> None:
    drops: list[Drop] = []
    client = Client(
        WRITE_KEY,
        host="http://127.0.0.1:9",
        pseudonymize=False,
        consent_regime="opt_out",
        max_queue_size=10,
        flush_interval=60,
        on_drop=drops.append,
    )
    try:
        with caplog.at_level(logging.WARNING, logger="journeykit"):
            for i in range(1_000):
                client.track("u1", "Page Read", {"i": i})
        full = [r for r in caplog.records if "(queue_full)" in r.getMessage()]
        assert len(full) == 1  # not 990 lines
        assert client.stats().dropped["queue_full"] == len(drops) >= 980
    finally:
        client.shutdown(timeout=0.1)
