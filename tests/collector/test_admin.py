"""The admin API: the admin key opens it, a write key never does."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import httpx
import pytest
from helpers import WRITE_KEY, basic_auth, running_collector
from pydantic import SecretStr, ValidationError

from journeykit.collector.settings import CollectorSettings

ADMIN_KEY = "admin-key-0123456789abcdef"
STATUS = "/admin/v1/status"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_status_needs_the_admin_key(tmp_path: Path) -> None:
    with running_collector(tmp_path, admin_key=SecretStr(ADMIN_KEY)) as c:
        missing = httpx.get(c.url + STATUS)
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthorized"
        assert "WWW-Authenticate" in missing.headers
        assert httpx.get(c.url + STATUS, headers=bearer("wrong-key")).status_code == 401
        for write_key in (bearer(WRITE_KEY), basic_auth(WRITE_KEY)):
            refused = httpx.get(c.url + STATUS, headers=write_key)
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "forbidden"
        for admin in (bearer(ADMIN_KEY), basic_auth(ADMIN_KEY)):
            ok = httpx.get(c.url + STATUS, headers=admin)
            assert ok.status_code == 200
        status = ok.json()
        assert status["ok"] is True
        assert status["data_dir"] == str(tmp_path.resolve())
        assert status["write_keys"] == 1
        assert status["sources"] == ["default"]
        assert status["pid"] == os.getpid()  # served from a thread of this process
        assert status["uptime_seconds"] >= 0
        assert isinstance(status["version"], str)
        assert WRITE_KEY not in ok.text
        assert ADMIN_KEY not in ok.text
        # The admin key is not a write key either.
        body = {"batch": [{"type": "track", "userId": "u", "event": "E"}]}
        assert httpx.post(c.url + "/v1/batch", json=body, headers=basic_auth(ADMIN_KEY)).is_error


def test_without_an_admin_key_the_admin_api_is_closed(tmp_path: Path) -> None:
    with running_collector(tmp_path) as c:
        refused = httpx.get(c.url + STATUS, headers=bearer(ADMIN_KEY))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "admin_disabled"
        assert httpx.get(c.url + STATUS, headers=bearer(WRITE_KEY)).status_code == 403
        assert httpx.get(c.url + STATUS).status_code == 401


def test_admin_key_must_be_long_and_apart_from_write_keys() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        CollectorSettings(write_keys=("k",), admin_key="short")
    with pytest.raises(ValidationError, match="must not also be a write key"):
        CollectorSettings(write_keys=(ADMIN_KEY,), admin_key=ADMIN_KEY)


def test_a_dsr_request_on_a_locked_suppression_list_is_a_503(tmp_path: Path) -> None:
    # Another process holds the list's write lock past the 10 s wait (a stuck command).
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with running_collector(tmp_path, admin_key=SecretStr(ADMIN_KEY)) as running:
        database = tmp_path / "suppression" / "suppressions.sqlite3"
        holder = sqlite3.connect(database, isolation_level=None, timeout=1)
        holder.execute("BEGIN IMMEDIATE")
        try:
            erase = httpx.post(
                running.url + "/admin/v1/dsr/erase", headers=admin, json={"subject": "user-2"},
                timeout=60,
            )  # fmt: skip
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert erase.status_code == 503, erase.text
        assert erase.json()["error"]["code"] == "storage_unavailable"
        assert erase.headers["Retry-After"]
        listed = httpx.get(running.url + "/admin/v1/dsr/requests", headers=admin).json()
        assert [(r["kind"], r["status"]) for r in listed["requests"]] == [("erasure", "failed")]
