"""Fixtures for the decision tests: a real redis-server, and engines on both backends."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, load_beside

from journeykit.collector.decisions import DecisionEngine, DecisionSettings, RuleSet, load_rules
from journeykit.collector.decisions._engine import open_store
from journeykit.collector.decisions._writeback import Suppressed

load_beside(__file__, "decisions_helpers")
from decisions_helpers import Clock, EngineFactory, start_redis, stop  # noqa: E402

REDIS_SERVER = os.environ.get("JOURNEYKIT_REDIS_SERVER", "redis-server")
# Set to 1 to run without Redis where it cannot be installed; CI never sets it.
SKIP_REDIS = os.environ.get("JOURNEYKIT_SKIP_REDIS") == "1"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own on a free 127.0.0.1 port, stopped at the end of the session."""
    binary = shutil.which(REDIS_SERVER)
    if binary is None:
        if SKIP_REDIS:
            pytest.skip("redis-server not installed and JOURNEYKIT_SKIP_REDIS=1")
        pytest.fail(
            "redis-server is not installed (apt-get install redis-server); "
            "set JOURNEYKIT_SKIP_REDIS=1 to skip the Redis tests on purpose"
        )
    port = free_port()
    proc = start_redis(binary, port, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["queued", "written"])
def mode(request: pytest.FixtureRequest) -> str:
    """``queued``: nothing is flushed unless a test says so, decisions read the queue;
    ``written``: every update is written at once (``flush_interval_seconds=0``)."""
    return str(request.param)


_prefixes = iter(range(1_000_000))


@pytest.fixture
def settings(backend: str, mode: str, request: pytest.FixtureRequest) -> DecisionSettings:
    """Settings for ``backend``; each Redis test gets its own key prefix (a clean store)."""
    interval = 3600.0 if mode == "queued" else 0.0
    timing = {"flush_interval_seconds": interval, "stats_flush_seconds": interval}
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = f"t{next(_prefixes)}:"
        return DecisionSettings(backend="redis", redis_url=url, redis_prefix=prefix, **timing)
    return DecisionSettings(**timing)


@pytest.fixture
def make_engine(
    settings: DecisionSettings, tmp_path: Path, clock: Clock
) -> Iterator[EngineFactory]:
    """Engines on one shared store (as several collector processes would have)."""
    engines: list[DecisionEngine] = []

    def make(
        rules: RuleSet | None = None, suppressed: Suppressed | None = None, **changes: object
    ) -> DecisionEngine:
        chosen = settings.model_copy(update=changes) if changes else settings
        store = open_store(chosen, tmp_path / "data")
        engine = DecisionEngine(store, rules or load_rules(None), chosen, clock, suppressed)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def engine(make_engine: EngineFactory) -> DecisionEngine:
    return make_engine()
