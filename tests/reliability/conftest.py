"""Fixtures for the fault-injection tests: collector and Redis processes they can kill."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import RedisProcess, load_beside

load_beside(__file__, "reliability_processes")
from reliability_processes import CollectorProcess  # noqa: E402

REDIS_SERVER = os.environ.get("JOURNEYKIT_REDIS_SERVER", "redis-server")


@pytest.fixture
def collector_process() -> Iterator[Callable[..., CollectorProcess]]:
    """``collector_process(data_dir, env)``: a collector not started yet; all stopped at the end."""
    made: list[CollectorProcess] = []

    def make(data_dir: Path, env: dict[str, str] | None = None) -> CollectorProcess:
        made.append(CollectorProcess(data_dir, env or {}))
        return made[-1]

    yield make
    for running in made:
        running.stop()


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of our own, not started yet; stopped at the end of the test."""
    binary = shutil.which(REDIS_SERVER)
    if binary is None:
        if os.environ.get("JOURNEYKIT_SKIP_REDIS") == "1":
            pytest.skip("redis-server not installed and JOURNEYKIT_SKIP_REDIS=1")
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisProcess(binary, workdir)
    yield server
    server.stop()
