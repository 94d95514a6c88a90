"""Files holding personal data are not readable by every user, whatever the umask.

docs/security.md: data files are created ``0640``, an access export ``0600``.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dsr_shop import dsr
from helpers import running_collector


@pytest.fixture
def open_umask() -> Iterator[None]:
    before = os.umask(0o022)  # the usual default: new files world-readable unless asked
    try:
        yield
    finally:
        os.umask(before)


def _others_may_read(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IRWXO)


def test_personal_data_files_are_private(tmp_path: Path, open_umask: None) -> None:
    data = tmp_path / "data"
    event = {"type": "track", "userId": "alice", "event": "Product Viewed", "messageId": "m1"}
    with running_collector(data, consent_regime="opt_out") as running:
        batch = {"batch": [event]}
        answer = httpx.post(f"{running.url}/v1/batch", json=batch, headers=running.auth())
        assert answer.json()["accepted"] == 1
        time.sleep(0.5)  # the profile store's write-behind
        out = tmp_path / "alice.zip"
        exported = dsr(data, "export", "alice", "--out", str(out))
        assert exported.returncode == 0, exported.stderr
    private = [
        data / "profiles" / "profiles.sqlite3",
        data / "suppression" / "suppressions.sqlite3",
        *data.rglob("*.ndjson"),
    ]
    assert [p for p in private if _others_may_read(p)] == []
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
