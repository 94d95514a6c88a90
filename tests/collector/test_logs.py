"""Logs: JSON lines when asked for, and never a key in them."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from helpers import PSEUDONYM_KEY, SERVER_ENV, basic_auth, running_collector, serve

from journeykit.collector.logs import JsonFormatter, logging_config

ADMIN_KEY = "admin-key-0123456789abcdef"


def test_json_formatter_writes_one_object_per_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "journeykit.collector", logging.ERROR, __file__, 1, "a %s", ("b",), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "journeykit.collector"
    assert entry["message"] == "a b"
    assert entry["time"].endswith("Z")
    assert "ValueError: boom" in entry["exc_info"]


def test_logging_config_levels() -> None:
    config = logging_config("text", "trace")
    assert config["loggers"]["journeykit"]["level"] == "DEBUG"
    assert "()" not in config["formatters"]["default"]


def test_served_json_logs_never_contain_a_key(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text('[[write_keys]]\nkey = "file-key-0123456789"\nsource = "web"\n')
    env = {**SERVER_ENV, "JOURNEYKIT_ADMIN_KEY": ADMIN_KEY}
    args = ("--config", str(config), "--log-format", "json", "--log-level", "debug")
    body = {"batch": [{"type": "track", "userId": "u", "event": "E"}]}
    with serve(tmp_path / "d", *args, env=env) as (url, process):
        assert httpx.post(url + "/v1/batch", json=body, headers=basic_auth("file-key-0123456789"))
        assert httpx.post(url + "/v1/batch", json=body, headers=basic_auth("a-wrong-key-4242"))
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        assert httpx.get(url + "/admin/v1/status", headers=admin).is_success
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0]  # stdout and stderr together
    entries = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # debug: startup lines
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    for secret in ("file-key-0123456789", ADMIN_KEY, PSEUDONYM_KEY, "a-wrong-key-4242"):
        assert secret not in output


def test_an_unsigned_consent_ledger_is_said_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNEYKIT_LEDGER_SIGNING_KEY_FILE", raising=False)
    with (
        caplog.at_level(logging.WARNING, logger="journeykit.collector"),
        running_collector(tmp_path / "unsigned"),
    ):
        pass
    assert any("consent ledger is not signed" in r.getMessage() for r in caplog.records)
    caplog.clear()
    key = tmp_path / "signing.key"
    key.write_bytes(os.urandom(32))  # a raw Ed25519 seed, owner-only
    key.chmod(0o600)
    monkeypatch.setenv("JOURNEYKIT_LEDGER_SIGNING_KEY_FILE", str(key))
    with (
        caplog.at_level(logging.WARNING, logger="journeykit.collector"),
        running_collector(tmp_path / "signed"),
    ):
        pass
    assert not any("not signed" in r.getMessage() for r in caplog.records)


def test_start_up_warnings_are_json_lines_too(tmp_path: Path) -> None:
    # The unsigned-ledger warning is logged while the app is built, before uvicorn set up the
    # logging: it went out as plain text through Python's last-resort handler.
    args = ("--log-format", "json", "--write-key", "key-0123456789abcdef")
    with serve(tmp_path / "d", *args) as (_, process):
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0]
    logged = [line for line in output.splitlines() if "not signed" in line]
    assert logged, output
    assert all(json.loads(line)["level"] == "WARNING" for line in logged)


def test_a_beacons_write_key_never_reaches_the_trace_log(tmp_path: Path) -> None:
    # RudderStack's beacon sends the key as ?writeKey=; uvicorn's trace lines print the query.
    key = "beacon-key-0123456789"
    args = ("--log-level", "trace", "--write-key", key)
    body = b'{"batch":[{"type":"track","userId":"u","event":"E"}]}'
    with serve(tmp_path / "d", *args) as (url, process):
        answer = httpx.post(
            f"{url}/beacon/v1/batch?writeKey={key}",
            content=body,
            headers={"Content-Type": "text/plain"},
        )
        assert answer.json()["accepted"] == 1
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0]
    assert "uvicorn.asgi" in output or "ASGI" in output  # the trace lines were written
    assert key not in output
