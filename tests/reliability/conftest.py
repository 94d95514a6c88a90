"""Fixtures for the fault-injection tests: collector and Redis processes they can kill."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import load_beside

load_beside(__file__, "reliability_processes")
from reliability_processes import CollectorProcess  # noqa: E402


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
