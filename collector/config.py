"""Building the collector's settings from defaults, a TOML file, the environment and flags.

Later sources win, a whole setting at a time: defaults < ``--config FILE`` < ``JOURNEYKIT_*``
variables < command-line flags. A list in the environment is comma-separated, or a JSON array
when it starts with ``[`` (write keys with their source, rate and consent mode); a table
(``decision_options``) is a JSON object. Every
setting has the same name in TOML and, upper-cased with ``JOURNEYKIT_`` in front, in the
environment (see docs/collector.md). Errors come back as :class:`ConfigError` with a message
that names the setting and where its value came from, and never the value itself (it may be
a key).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from journeykit.collector.settings import CollectorSettings

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "SETTINGS_JSON_ENV",
    "Config",
    "ConfigError",
    "ServerSettings",
    "env_name",
    "flag_name",
    "load_config",
    "settings_from_env",
    "settings_to_json",
]

ENV_PREFIX = "JOURNEYKIT_"
CONFIG_ENV = "JOURNEYKIT_CONFIG"
#: Settings handed from the command to its worker processes; holds secrets, see docs.
SETTINGS_JSON_ENV = "JOURNEYKIT__SETTINGS_JSON"

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


class ServerSettings(BaseModel):
    """How the command serves the app: address, processes, logging."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="127.0.0.1", min_length=1, description="Address to bind.")
    port: int = Field(default=8787, ge=0, le=65_535, description="Port to bind.")
    workers: int = Field(default=1, ge=1, le=512, description="uvicorn worker processes.")
    log_level: LogLevel = Field(default="info", description="Lowest level logged.")
    log_format: Literal["text", "json"] = Field(
        default="text", description="text for people, json (one object a line) for machines."
    )


class ConfigError(Exception):
    """The configuration cannot be used; ``str(error)`` is written for the user."""


@dataclass(frozen=True, slots=True)
class Config:
    """Everything ``journeykit collector serve`` needs; ``embedded``: a dev key was used."""

    server: ServerSettings
    collector: CollectorSettings
    embedded: bool


# Set by the command itself, never by a user.
_INTERNAL = frozenset({"demo_keys", "dedup_peers"})
# Settings holding lists: comma-separated in the environment, repeatable as flags.
_LISTS = frozenset({"write_keys", "trusted_proxies", "cors_origins"})
# Settings holding tables: a TOML table, a JSON object in the environment, no flag.
_TABLES = frozenset({"decision_options"})
_FLAGS = {
    "write_keys": "--write-key",
    "trusted_proxies": "--trusted-proxy",
    "cors_origins": "--cors-origin",
}


def _server_fields() -> frozenset[str]:
    return frozenset(ServerSettings.model_fields)


def _all_fields() -> list[str]:
    fields = [*ServerSettings.model_fields, *CollectorSettings.model_fields]
    return [f for f in fields if f not in _INTERNAL]


def env_name(field: str) -> str:
    """The environment variable of a setting: ``data_dir`` -> ``JOURNEYKIT_DATA_DIR``."""
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    """The command-line flag of a setting, for messages: ``data_dir`` -> ``--data-dir``."""
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            doc = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    known = set(_all_fields())
    unknown = sorted(k for k in doc if k not in known)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting {', '.join(map(repr, unknown))}; "
            "see the Configuration section of docs/collector.md"
        )
    return doc


def _from_env(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    # Unknown JOURNEYKIT_* variables are left alone: the SDK and consent tools have their own.
    out: dict[str, tuple[Any, str]] = {}
    for field in _all_fields():
        name = env_name(field)
        raw = environ.get(name, "").strip()
        if not raw:  # set but empty counts as unset, as JOURNEYKIT_WRITE_KEYS always did
            continue
        value: Any = raw
        if field in _LISTS and raw.startswith("["):
            # The full form, e.g. write keys with sources, rates and consent modes.
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise ConfigError(f"${name} starts with '[' but is not a JSON array") from None
        elif field in _LISTS:
            value = [p.strip() for p in raw.split(",") if p.strip()]
        elif field in _TABLES:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                value = None
            if not isinstance(value, dict):
                raise ConfigError(f'${name} must be a JSON object, like {{"recommendations": 3}}')
        out[field] = (value, f"${name}")
    return out


def _layers(
    flags: Mapping[str, Any], environ: Mapping[str, str], config_file: Path | None
) -> dict[str, tuple[Any, str]]:
    merged: dict[str, tuple[Any, str]] = {}
    if config_file is not None:
        merged.update((k, (v, str(config_file))) for k, v in _read_toml(config_file).items())
    merged.update(_from_env(environ))
    for field, value in flags.items():
        if field not in _all_fields():
            raise ValueError(f"no setting is called {field!r}")  # a bug in the caller
        if value is not None and value != []:
            merged[field] = (value, flag_name(field))
    return merged


def _explain(exc: ValidationError, origins: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = err["loc"]
        path = ""
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = err["msg"].removeprefix("Value error, ")
        field = str(loc[0]) if loc else message.partition(":")[0]
        origin = origins.get(field, "default")
        lines.append(f"  {path or field} (from {origin}): {message.removeprefix(field + ': ')}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_config(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    dev_write_key: Callable[[Path], SecretStr] | None = None,
) -> Config:
    """Merge the sources and validate; raises :class:`ConfigError` with a readable message.

    Args:
        flags: setting name -> value from the command line; ``None`` means not given.
        environ: the environment (default ``os.environ``); also names the config file
            through ``JOURNEYKIT_CONFIG`` when ``config_file`` is ``None``.
        config_file: the TOML file given with ``--config``.
        dev_write_key: called with the data dir when no write key is configured anywhere;
            without it, that is an error.
    """
    env = os.environ if environ is None else environ
    if config_file is None and env.get(CONFIG_ENV, "").strip():
        config_file = Path(env[CONFIG_ENV].strip())
    merged = _layers(flags, env, config_file)
    origins = {field: origin for field, (_, origin) in merged.items()}
    values = {field: value for field, (value, _) in merged.items()}
    server_values = {k: v for k, v in values.items() if k in _server_fields()}
    collector_values = {k: v for k, v in values.items() if k not in _server_fields()}
    embedded = not collector_values.get("write_keys")
    if embedded:
        if dev_write_key is None:
            raise ConfigError(f"no write key: set write_keys, ${env_name('write_keys')}")
        data_dir = Path(str(collector_values.get("data_dir", "data")))
        collector_values["write_keys"] = [dev_write_key(data_dir)]
        collector_values["demo_keys"] = True
    try:
        server = ServerSettings.model_validate(server_values)
        collector = CollectorSettings.model_validate(collector_values)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origins)) from None
    return Config(server, collector, embedded)


def _reveal(value: object) -> object:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path | ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def settings_to_json(settings: CollectorSettings) -> str:
    """The settings as JSON **with secrets in clear**, for :data:`SETTINGS_JSON_ENV` only."""
    return orjson.dumps(settings.model_dump(), default=_reveal).decode()


def settings_from_env(environ: Mapping[str, str] | None = None) -> CollectorSettings:
    """The settings the command left in :data:`SETTINGS_JSON_ENV` for a worker process."""
    raw = (os.environ if environ is None else environ).get(SETTINGS_JSON_ENV)
    if not raw:
        raise RuntimeError(
            f"{SETTINGS_JSON_ENV} is not set: app_from_env serves worker processes started by "
            "`journeykit collector serve --workers N`; embed create_app(settings) otherwise"
        )
    return CollectorSettings.model_validate_json(raw)
