"""Fixtures for the web integration tests: a client whose network edge is a Recorder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import Recorder
from integrations.support import recording_client

from journeykit.sdk import Client


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(recorder: Recorder) -> Iterator[Client]:
    sdk = recording_client(recorder)
    yield sdk
    sdk.shutdown(timeout=5)
