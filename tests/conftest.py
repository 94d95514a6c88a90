"""Fixtures shared by the SDK, collector and example tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import WIRE, RunningCollector, running_collector


@pytest.fixture(scope="session")
def wire_dir() -> Path:
    return WIRE


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[RunningCollector]:
    """A real collector on 127.0.0.1 with a fresh data dir and the test write key."""
    with running_collector(tmp_path / "data") as running:
        yield running
