"""Configuration: defaults < TOML file < JOURNEYKIT_* variables < flags, and readable errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers import SERVER_ENV, basic_auth, serve
from pydantic import SecretStr

from journeykit.collector.config import (
    ConfigError,
    load_config,
    settings_from_env,
    settings_to_json,
)
from journeykit.collector.keys import load_pseudonymizer
from journeykit.collector.settings import CollectorSettings
from journeykit.consent import FieldKind, Pseudonymizer, PseudonymKey, PseudonymKeyError

TOML = """
data_dir = "from-file"
fsync = "never"
port = 9001
log_format = "json"
trusted_proxies = ["10.0.0.0/8"]

[[write_keys]]
key = "file-key-web"
source = "web"
rate = 500
burst = 1000

[[write_keys]]
key = "file-key-app"
source = "app"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = _write(tmp_path, TOML)
    only_file = load_config({}, {}, path)
    assert only_file.collector.fsync == "never"
    assert only_file.collector.data_dir == Path("from-file")
    assert only_file.server.port == 9001
    assert only_file.server.log_format == "json"
    assert [(k.source, k.rate, k.capacity) for k in only_file.collector.write_keys] == [
        ("web", 500, 1000),
        ("app", None, None),
    ]
    assert not only_file.embedded

    env = {"JOURNEYKIT_FSYNC": "interval", "JOURNEYKIT_PORT": "9002", "JOURNEYKIT_WORKERS": "3"}
    with_env = load_config({}, env, path)
    assert (with_env.collector.fsync, with_env.server.port) == ("interval", 9002)
    assert with_env.server.workers == 3
    assert with_env.collector.data_dir == Path("from-file")  # not overridden: the file's stays

    with_flags = load_config(
        {"fsync": "always", "port": None, "write_keys": ["flag-key"]}, env, path
    )
    assert with_flags.collector.fsync == "always"
    assert with_flags.server.port == 9002  # a flag left out (None) does not override
    # A list setting is replaced as a whole by a later source, never merged.
    assert [k.key.get_secret_value() for k in with_flags.collector.write_keys] == ["flag-key"]
    assert with_flags.collector.write_keys[0].source == "default"


def test_environment_lists_and_config_variable(tmp_path: Path) -> None:
    path = _write(tmp_path, 'admin_key = "admin-key-0123456789"\n')
    config = load_config(
        {},
        {
            "JOURNEYKIT_CONFIG": str(path),
            "JOURNEYKIT_WRITE_KEYS": "a, ,b",
            "JOURNEYKIT_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1",
            "JOURNEYKIT_UNRELATED": "ignored",
        },
    )
    assert [k.key.get_secret_value() for k in config.collector.write_keys] == ["a", "b"]
    assert [str(n) for n in config.collector.trusted_proxies] == ["10.0.0.0/8", "192.168.1.1/32"]
    assert config.collector.admin_key is not None


def test_no_key_anywhere_uses_the_development_key(tmp_path: Path) -> None:
    seen: list[Path] = []

    def dev_key(data_dir: Path) -> SecretStr:
        seen.append(data_dir)
        return SecretStr("dev-key")

    config = load_config({"data_dir": tmp_path}, {}, None, dev_key)
    assert config.embedded
    assert config.collector.demo_keys
    assert seen == [tmp_path]
    with pytest.raises(ConfigError, match="no write key"):
        load_config({}, {})


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ('fsync = "sometimes"', {}, "fsync (from {file}): Input should be"),
        ("port = 8787\nport = 1", {}, "is not valid TOML"),
        ('colour = "blue"', {}, "{file}: unknown setting 'colour'"),
        ("[[write_keys]]\nkey = 'k'\nrate = -1", {}, "write_keys[0].rate (from {file})"),
        ("[[write_keys]]\nkey = 'k'\nburst = 5", {}, "burst is set without rate"),
        ('write_keys = ["k", "k"]', {}, "write_keys (from {file}): a write key is listed twice"),
        ("", {"JOURNEYKIT_PORT": "eighty"}, "port (from $JOURNEYKIT_PORT)"),
        ("", {"JOURNEYKIT_TRUSTED_PROXIES": "10.0.0.1/8"}, "trusted_proxies[0] (from $JOURNEY"),
        (
            "[decision_options]\nflush_events = 0",
            {},
            "decision_options.flush_events (from {file}): Input should be greater than",
        ),
        ("[decision_options]\ncolour = 1", {}, "decision_options.colour (from {file}): Extra"),
        (
            "",
            {"JOURNEYKIT_DECISION_OPTIONS": '{"backend": "redis"}'},
            "backend: not an option here; the collector's 'profile_store' setting sets it",
        ),
        (
            "",
            {"JOURNEYKIT_DECISION_OPTIONS": "recommendations=3"},
            "$JOURNEYKIT_DECISION_OPTIONS must be a JSON object",
        ),
    ],
)
def test_errors_name_the_setting_and_its_source(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    path = _write(tmp_path, "write_keys = ['k']\n" if "write_keys" not in text else "")
    path.write_text(path.read_text() + text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config({}, env, path)
    assert expected.format(file=path) in str(caught.value)


def test_secrets_are_not_echoed_in_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, 'write_keys = ["same-key-0123456789"]\nadmin_key = "short-admin"\n')
    with pytest.raises(ConfigError) as short:
        load_config({}, {}, path)
    assert "admin_key (from" in str(short.value)
    assert "at least 16 characters" in str(short.value)
    assert "short-admin" not in str(short.value)
    with pytest.raises(ConfigError) as same:
        load_config({"admin_key": "same-key-0123456789"}, {}, path)
    assert "admin_key (from --admin-key): the admin key must not also be a write key" in str(
        same.value
    )
    assert "same-key-0123456789" not in str(same.value)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "journeykit.collector", "collector", "serve", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_a_data_dir_that_cannot_be_used_exits_2_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for args in (("--data-dir", str(blocker / "data")), ("--data-dir", str(blocker))):
        result = _run(*args, "--port", "1")  # fails before it binds
        assert result.returncode == 2, result.stderr
        assert "journeykit: cannot use the data dir" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout


def test_bad_config_file_exits_2_with_a_message(tmp_path: Path) -> None:
    bad = _write(tmp_path, 'write_keys = ["k"]\nfsync = "sometimes"\n')
    result = _run("--config", str(bad), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert f"journeykit: invalid configuration:\n  fsync (from {bad})" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    missing = _run("--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert "cannot read the config file" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_served_collector_takes_keys_from_its_file(tmp_path: Path) -> None:
    path = _write(tmp_path, 'write_keys = ["toml-key"]\nfsync = "never"\n')
    body = {"batch": [{"type": "track", "userId": "u", "event": "E"}]}
    with serve(tmp_path / "d", "--config", str(path), env=SERVER_ENV) as (url, _):
        assert httpx.post(url + "/v1/batch", json=body, headers=basic_auth("toml-key")).is_success
    env = {**SERVER_ENV, "JOURNEYKIT_WRITE_KEYS": "env-key"}
    with serve(tmp_path / "d", "--config", str(path), env=env) as (url, _):
        # The environment outranks the file: its key replaces the file's.
        assert httpx.post(url + "/v1/batch", json=body, headers=basic_auth("env-key")).is_success
        refused = httpx.post(url + "/v1/batch", json=body, headers=basic_auth("toml-key"))
        assert refused.status_code == 401


def test_settings_survive_the_trip_to_worker_processes(tmp_path: Path) -> None:
    config = load_config(
        {"admin_key": "admin-key-0123456789", "data_dir": tmp_path}, {}, _write(tmp_path, TOML)
    )
    text = settings_to_json(config.collector)
    assert "file-key-web" in text  # in clear: the variable exists to carry them
    again = settings_from_env({"JOURNEYKIT__SETTINGS_JSON": text})
    assert again == config.collector
    with pytest.raises(RuntimeError, match="JOURNEYKIT__SETTINGS_JSON is not set"):
        settings_from_env({})


def test_decision_options_from_the_file_or_the_environment(tmp_path: Path) -> None:
    from journeykit.collector.personalize import decision_settings

    path = _write(
        tmp_path,
        'write_keys = ["k"]\nprofile_store = "redis"\nredis_url = "redis://127.0.0.1:1/0"\n'
        '[decision_options]\nrecommendations = 3\nredis_prefix = "prod:"\n',
    )
    engine = decision_settings(load_config({}, {}, path).collector)
    assert (engine.recommendations, engine.redis_prefix, engine.backend) == (3, "prod:", "redis")
    assert engine.redis_url is not None
    # The environment replaces the whole table, as it does any setting.
    env = {"JOURNEYKIT_DECISION_OPTIONS": '{"flush_events": 200}'}
    config = load_config({}, env, path)
    engine = decision_settings(config.collector)
    assert (engine.flush_events, engine.recommendations, engine.redis_prefix) == (200, 5, "jk:")
    again = settings_from_env({"JOURNEYKIT__SETTINGS_JSON": settings_to_json(config.collector)})
    assert decision_settings(again) == engine


def test_every_setting_is_documented() -> None:
    from helpers import ROOT

    from journeykit.collector.config import ServerSettings, env_name
    from journeykit.collector.settings import CollectorSettings

    docs = (ROOT / "docs" / "collector.md").read_text(encoding="utf-8")
    fields = [*ServerSettings.model_fields, *CollectorSettings.model_fields]
    missing = [
        f
        for f in fields
        if f not in ("demo_keys", "dedup_peers")  # set by the command, not by a user
        and f"| `{f}` | `{env_name(f)}` |" not in docs
    ]
    assert missing == []


def test_old_keys_from_the_environment_still_match_after_a_rotation(tmp_path: Path) -> None:
    before, after = "a-key-of-the-old-days-0123", "the-new-key-after-rotation-4567"
    old = Pseudonymizer([PseudonymKey(key_id="k1", secret=SecretStr(before))])
    settings = CollectorSettings(
        data_dir=tmp_path,
        write_keys=(SecretStr("w"),),
        pseudonym_key=SecretStr(after),
        pseudonym_key_id="k2",
        pseudonym_old_keys=SecretStr(f"k1:{before}"),
    )
    rotated = load_pseudonymizer(settings)
    earlier = old.pseudonymize("user-42", FieldKind.ID)
    assert earlier in rotated.candidates("user-42", FieldKind.ID)
    assert rotated.pseudonymize("user-42", FieldKind.ID).startswith("hmac-sha256:k2:")
    key_file = tmp_path / "keys.json"
    key_file.write_text(json.dumps({"current": "k1", "keys": {"k1": before}}))
    both = settings.model_copy(update={"pseudonym_key_file": key_file})
    with pytest.raises(PseudonymKeyError, match="not both"):
        load_pseudonymizer(both)
