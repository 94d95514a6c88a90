"""Fixtures shared by the SDK, collector and example tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import WIRE, RedisProcess, RunningCollector, running_collector


@pytest.fixture(scope="session")
def wire_dir() -> Path:
    return WIRE


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[RunningCollector]:
    """A real collector on 127.0.0.1 with a fresh data dir and the test write key."""
    with running_collector(tmp_path / "data") as running:
        yield running


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of our own, not started yet; stopped at the end of the test."""
    binary = shutil.which(os.environ.get("JOURNEYKIT_REDIS_SERVER", "redis-server"))
    if binary is None:
        if os.environ.get("JOURNEYKIT_SKIP_REDIS") == "1":
            pytest.skip("redis-server not installed and JOURNEYKIT_SKIP_REDIS=1")
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisProcess(binary, workdir)
    yield server
    server.stop()
