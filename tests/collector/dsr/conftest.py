"""A collector data dir with the traffic of three people, for the data-subject request tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dsr_shop import Shop, invalid_for_alice, traffic
from helpers import PSEUDONYM_KEY, running_collector
from pydantic import SecretStr

from journeykit.collector.keys import load_pseudonymizer
from journeykit.collector.settings import CollectorSettings


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    data_dir = tmp_path / "data"
    settings = CollectorSettings(
        data_dir=data_dir,
        consent_regime="opt_out",
        pseudonym_key=SecretStr(PSEUDONYM_KEY),
        write_keys=(SecretStr("k"),),
    )
    with running_collector(data_dir) as running:
        answer = httpx.post(
            f"{running.url}/v1/batch",
            json={"batch": [*traffic(), invalid_for_alice()]},
            headers=running.auth(),
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == len(traffic())
        yield Shop(data_dir, load_pseudonymizer(settings), running)
