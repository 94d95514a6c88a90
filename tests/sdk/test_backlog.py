"""Backlog coalescing: a trickle goes out in batches of batch_size, a backlog in larger ones."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from helpers import Recorder
from pydantic import ValidationError

from journeykit.sdk import AsyncClient, Client

DELIVERY_ONLY: dict[str, Any] = {"consent_regime": "opt_out", "pseudonymize": False}


class Gate(Recorder):
    """A collector that holds its first request until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.first_arrived = threading.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        response = super().__call__(request)
        if not self.first_arrived.is_set():
            self.first_arrived.set()
            self.release.wait(30)
        return response


def sizes(recorder: Recorder) -> list[int]:
    return [len(body["batch"]) for body in recorder.bodies]


def test_a_backlog_drains_in_requests_of_max_backlog_batch() -> None:
    collector = Gate()
    options = {"batch_size": 10, "max_backlog_batch": 50, "flush_interval": 60}
    client = Client("k", transport=httpx.MockTransport(collector), **DELIVERY_ONLY, **options)
    try:
        for i in range(10):
            client.track("u1", "Tick", {"i": i})
        assert collector.first_arrived.wait(10)  # a full batch goes at once, then hangs
        for i in range(10, 130):
            client.track("u1", "Tick", {"i": i})
        collector.release.set()
        assert client.flush(timeout=10)
    finally:
        client.shutdown(timeout=5)
    assert sizes(collector) == [10, 50, 50, 20]
    assert [e["properties"]["i"] for e in collector.events] == list(range(130))
    assert client.stats().sent == 130


def test_a_backlog_batch_stays_under_max_batch_bytes() -> None:
    collector = Gate()
    options = {"batch_size": 5, "max_backlog_batch": 100, "max_batch_bytes": 4_096}
    client = Client("k", transport=httpx.MockTransport(collector), **DELIVERY_ONLY, **options)
    try:
        for i in range(5):
            client.track("u1", "Tick", {"i": i})
        assert collector.first_arrived.wait(10)
        for i in range(5, 105):
            client.track("u1", "Tick", {"i": i, "pad": "x" * 200})
        collector.release.set()
        assert client.flush(timeout=10)
    finally:
        client.shutdown(timeout=5)
    later = sizes(collector)[1:]
    assert sum(later) == 100
    assert 5 < max(later) < 100  # larger than batch_size, cut by bytes
    for request in collector.requests[1:]:
        assert len(request.read()) < 4_096  # gzip only shrinks the joined events


def test_the_async_client_drains_a_backlog_in_larger_requests() -> None:
    collector = Recorder()

    async def main() -> None:
        options = {"batch_size": 10, "max_backlog_batch": 50, "flush_interval": 60}
        transport = httpx.MockTransport(collector)
        async with AsyncClient("k", transport=transport, **DELIVERY_ONLY, **options) as client:
            for i in range(120):  # no await in between: the delivery task has not run yet
                client.track("u1", "Tick", {"i": i})
            assert await client.flush(timeout=10)

    asyncio.run(main())
    assert sizes(collector) == [50, 50, 20]
    assert [e["properties"]["i"] for e in collector.events] == list(range(120))


def test_max_backlog_batch_is_bounded_by_the_collector_limit() -> None:
    with pytest.raises(ValidationError, match="max_backlog_batch"):
        Client("k", max_backlog_batch=2_501)
    with pytest.raises(ValidationError, match="max_backlog_batch"):
        Client("k", max_backlog_batch=0)
