"""``journeykit collector serve`` as a real process: keys, startup, a request, clean stop."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest
from helpers import basic_auth, ndjson_lines, serve

from journeykit.collector._cli import main
from journeykit.collector.keys import KeyRing, keys_from_env, load_or_create_dev_key


def test_embedded_default_key_is_generated_printed_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serve(data_dir) as (url, process):
        key = (data_dir / "dev-write-key").read_text().strip()
        assert key.startswith("jk_dev_")
        assert oct((data_dir / "dev-write-key").stat().st_mode & 0o777) == "0o600"
        body = {"batch": [{"type": "track", "userId": "u", "event": "E"}]}
        ok = httpx.post(url + "/v1/batch", json=body, headers=basic_auth(key))
        assert ok.status_code == 200
        assert httpx.post(url + "/v1/batch", json=body, headers=basic_auth("x")).status_code == 401
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0]
    # uvicorn shuts down gracefully, then re-raises the signal it caught, as a CLI should.
    assert process.returncode in (0, -signal.SIGTERM)
    assert f"development write key (generated): {key}" in output
    assert len(ndjson_lines(data_dir / "events")) == 1
    with serve(data_dir) as (_, again):
        again.send_signal(signal.SIGTERM)
        assert f"development write key (reused): {key}" in again.communicate(timeout=15)[0]


def test_keys_from_flags_and_environment(tmp_path: Path) -> None:
    body = {"batch": [{"type": "track", "userId": "u", "event": "E"}]}
    with serve(tmp_path / "a", "--write-key", "k-one", "--write-key", "k-two") as (url, _):
        for key in ("k-one", "k-two"):
            assert httpx.post(url + "/v1/batch", json=body, headers=basic_auth(key)).is_success
    with serve(tmp_path / "b", env={"JOURNEYKIT_WRITE_KEYS": "env-1, env-2"}) as (url, process):
        assert httpx.post(url + "/v1/batch", json=body, headers=basic_auth("env-2")).is_success
        process.send_signal(signal.SIGTERM)
        assert "env-2" not in process.communicate(timeout=15)[0]  # keys are never printed
    assert not (tmp_path / "b" / "dev-write-key").exists()


def test_key_helpers(tmp_path: Path) -> None:
    assert [k.get_secret_value() for k in keys_from_env({"JOURNEYKIT_WRITE_KEYS": "a, ,b"})] == [
        "a",
        "b",
    ]
    key, created = load_or_create_dev_key(tmp_path)
    assert created
    assert load_or_create_dev_key(tmp_path) == (key, False)
    ring = KeyRing([key])
    assert ring.check(key.get_secret_value())
    assert not ring.check("other")
    assert not ring.check(None)
    assert KeyRing.from_basic_auth("Bearer abc") is None
    assert KeyRing.from_basic_auth("Basic !!!") is None


def test_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["protocol", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "Track" in schema["$defs"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_forwarded_for_is_believed_only_from_configured_trusted_proxies(
    tmp_path: Path, workers: str
) -> None:
    # uvicorn rewrites the peer address from X-Forwarded-For for loopback connections by
    # default (and for any peer under FORWARDED_ALLOW_IPS=*), before the collector sees it:
    # ``serve`` turns that off, so only ``trusted_proxies`` decides.
    def stored_ip(data_dir: Path, *args: str) -> str:
        env = {"FORWARDED_ALLOW_IPS": "*"}
        with serve(data_dir, "--workers", workers, "--write-key", "k", *args, env=env) as (url, _):
            body = {"batch": [{"type": "track", "userId": "u", "event": "E", "messageId": "m"}]}
            headers = {**basic_auth("k"), "X-Forwarded-For": "203.0.113.9"}
            assert httpx.post(url + "/v1/batch", json=body, headers=headers).is_success
        [event] = ndjson_lines(data_dir / "events")
        ip: str = event["context"]["ip"]
        return ip

    assert stored_ip(tmp_path / "untrusted") == "127.0.0.0"  # truncated by the default policy
    assert stored_ip(tmp_path / "trusted", "--trusted-proxy", "127.0.0.1") == "203.0.113.0"
