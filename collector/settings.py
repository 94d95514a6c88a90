"""The collector's configuration: one validated object; ``config`` builds it from its sources."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)

from journeykit.collector.decisions._settings import DecisionSettings
from journeykit.sdk.protocol import MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_REQUEST_BYTES

__all__ = [
    "DEFAULT_SOURCE",
    "CollectorSettings",
    "ConsentMode",
    "DecisionOptions",
    "FsyncPolicy",
    "WriteKey",
]

FsyncPolicy = Literal["always", "interval", "never"]
ConsentMode = Literal["enforce", "upstream"]

DEFAULT_SOURCE = "default"


class WriteKey(BaseModel):
    """One accepted write key: the source its events are labelled with, and its rate limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: SecretStr = Field(min_length=1, description="The secret a client sends.")
    source: str = Field(
        default=DEFAULT_SOURCE,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Stored with each accepted event as ``_source``.",
    )
    rate: float | None = Field(
        default=None, gt=0, description="Sustained events per second; None: unlimited."
    )
    burst: int | None = Field(
        default=None, ge=1, description="Events allowed at once; default: the rate, rounded up."
    )
    consent: ConsentMode = Field(
        default="enforce",
        description="enforce: the regime applies; upstream: the source checked consent itself, "
        "so a purpose the subject never chose reads as granted (recorded denials and the "
        "suppression list still apply).",
    )

    @model_validator(mode="after")
    def _burst_needs_rate(self) -> Self:
        if self.burst is not None and self.rate is None:
            raise ValueError("burst is set without rate")
        return self

    @property
    def capacity(self) -> int | None:
        """The token bucket's size, or ``None`` when the key is not rate limited."""
        if self.rate is None:
            return None
        return self.burst if self.burst is not None else max(1, math.ceil(self.rate))


# DecisionSettings fields the collector fills in from its own settings, by name.
_FROM_THE_COLLECTOR = {
    "enabled": "decisions",
    "backend": "profile_store",
    "redis_url": "redis_url",
    "rules_file": "rules_file",
}


class DecisionOptions(DecisionSettings):
    """The decision engine's settings a collector takes from ``decision_options``: every
    field of :class:`DecisionSettings` but the four it sets from its own settings."""

    # Left out of dumps (the settings handed to worker processes), so only a user sets them.
    enabled: bool = Field(default=True, exclude=True)
    backend: Literal["sqlite", "redis"] = Field(default="sqlite", exclude=True)
    redis_url: SecretStr | None = Field(default=None, exclude=True)
    rules_file: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _not_the_collectors(cls, data: Any) -> Any:
        # Before the fields: "backend" here must not first fail DecisionSettings' own checks.
        taken = sorted(_FROM_THE_COLLECTOR.keys() & set(data if isinstance(data, dict) else ()))
        if taken:
            name = taken[0]
            raise ValueError(
                f"{name}: not an option here; the collector's {_FROM_THE_COLLECTOR[name]!r} "
                "setting sets it"
            )
        return data

    def for_collector(
        self, enabled: bool, backend: str, redis_url: SecretStr | None, rules_file: Path | None
    ) -> DecisionSettings:
        """These options with the four the collector sets, as the engine's settings."""
        return DecisionSettings.model_validate(
            {
                **self.model_dump(),
                "enabled": enabled,
                "backend": backend,
                "redis_url": redis_url,
                "rules_file": rules_file,
            }
        )


class CollectorSettings(BaseModel):
    """Everything a collector process needs to know; see docs/collector.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(default=Path("data"), description="Root of everything written.")
    write_keys: tuple[WriteKey, ...] = Field(
        min_length=1, description="Keys accepted from tracking clients (plain strings allowed)."
    )
    admin_key: SecretStr | None = Field(
        default=None, description="Opens /admin/ (16+ characters); None: the admin API is closed."
    )
    trusted_proxies: tuple[IPvAnyNetwork, ...] = Field(
        default=(), description="Peers whose X-Forwarded-For is believed (CIDR or address)."
    )
    max_event_bytes: int = Field(default=MAX_EVENT_BYTES, ge=1_024)
    max_request_bytes: int = Field(
        default=MAX_REQUEST_BYTES, ge=1_024, description="Also caps the decompressed size."
    )
    max_batch_events: int = Field(default=MAX_BATCH_EVENTS, ge=1)
    dedup_window_seconds: float = Field(
        default=3_600.0, ge=0, description="How long a messageId is remembered; 0 turns off."
    )
    dedup_max_entries: int = Field(
        default=500_000, ge=1, description="Memory bound: the oldest ids are forgotten first."
    )
    fsync: FsyncPolicy = Field(
        default="always", description="When accepted events are forced to disk."
    )
    fsync_interval_seconds: float = Field(default=1.0, gt=0)
    commit_wait_seconds: float = Field(
        default=0.001,
        ge=0,
        le=0.1,
        description="How long a group commit may wait for more requests (fsync=always).",
    )
    rotate_bytes: int = Field(
        default=128 * 1024 * 1024, ge=1_024, description="Start a new NDJSON file past this."
    )
    gzip_closed: bool = Field(
        default=False,
        description="Compress NDJSON files to .ndjson.gz once closed (rotation, new hour).",
    )
    retry_after_seconds: int = Field(
        default=5, ge=1, description="Retry-After sent with 503 when the disk cannot be written."
    )
    consent_regime: Literal["opt_in", "opt_out"] = Field(
        default="opt_in",
        description="opt_in (GDPR): no recorded consent means no processing; opt_out (CCPA): "
        "events flow unless the subject opted out.",
    )
    pseudonym_key: SecretStr | None = Field(
        default=None, description="Current HMAC key for pseudonyms (at least 16 bytes)."
    )
    pseudonym_key_id: str = Field(default="k1", description="Id written into pseudonyms.")
    pseudonym_old_keys: SecretStr | None = Field(
        default=None,
        description="Keys before a rotation, 'id:secret,id:secret' (with pseudonym_key; as "
        "JOURNEYKIT_PSEUDONYM_OLD_KEYS for the SDK and the consent tools): pseudonyms made "
        "under them are still recognised (suppressions, data-subject requests).",
    )
    pseudonym_key_file: Path | None = Field(
        default=None, description="JSON key file with current and old keys (see consent.md)."
    )
    request_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A request body not received within this time is answered 408 and the "
        "connection closed (slow or stalled clients).",
    )
    cors_origins: tuple[str, ...] = Field(
        default=(),
        description="Origins allowed to call /v1/* from a browser (CORS); empty: no CORS "
        "headers at all. '*' allows any origin.",
    )
    decisions: bool = Field(
        default=True, description="Keep profiles and answer personalization decisions."
    )
    profile_store: Literal["sqlite", "redis"] = Field(
        default="sqlite",
        description="sqlite: under the data dir, one host; redis: shared by processes and hosts "
        "(then the dedup window lives in Redis too).",
    )
    redis_url: SecretStr | None = Field(
        default=None, description="redis://127.0.0.1:6379/0; required with profile_store=redis."
    )
    consent_sync_seconds: float = Field(
        default=0.1,
        gt=0,
        le=60,
        description="With profile_store=redis: the longest a consent-sync thread waits before "
        "looking again (stream reads block this long; the ledger is checked this often for "
        "other processes' appends); retries after a Redis failure start here.",
    )
    consent_stream_max_entries: int = Field(
        default=100_000,
        ge=1_000,
        description="With profile_store=redis: consent changes kept in the shared stream "
        "(MAXLEN ~, about 0.4 KB each); a collector further behind reads the snapshot.",
    )
    rules_file: Path | None = Field(
        default=None, description="Decision rules (TOML); none: the packaged default rules."
    )
    decision_options: DecisionOptions = Field(
        default_factory=DecisionOptions,
        description="The decision engine's own settings (a TOML table; a JSON object in the "
        "environment): recommendations, session_seconds, flush_interval_seconds, flush_events, "
        "redis_prefix, rfm_refresh_seconds, ... (docs/decisions.md).",
    )
    inline_decisions: int = Field(
        default=1,
        ge=0,
        description="Most subjects of one batch whose decisions come back in its answer (a "
        "browser or app batch is one person); 0: none. Each costs CPU: see docs/decisions.md.",
    )
    demo_keys: bool = Field(
        default=False,
        description="Embedded-demo mode: without configured keys, make development keys "
        "under the data dir instead of refusing to start.",
    )
    dedup_peers: bool = Field(
        default=False,
        description="Set by `serve --workers N`: the workers share their dedup windows through "
        "journals under the data dir (collector/dedup_peers.py).",
    )

    @field_validator("write_keys", mode="before")
    @classmethod
    def _plain_keys(cls, value: Any) -> Any:
        # A bare key (str or SecretStr) is a key of the default source without a rate limit.
        if isinstance(value, list | tuple):
            return tuple({"key": v} if isinstance(v, str | SecretStr) else v for v in value)
        return value

    @field_validator("write_keys")
    @classmethod
    def _keys_distinct(cls, keys: tuple[WriteKey, ...]) -> tuple[WriteKey, ...]:
        secrets = [k.key.get_secret_value() for k in keys]
        if len(set(secrets)) != len(secrets):
            raise ValueError("a write key is listed twice")
        return keys

    @field_validator("admin_key")
    @classmethod
    def _admin_key_long(cls, key: SecretStr | None) -> SecretStr | None:
        # Guessable admin keys would open every admin endpoint; write keys are less powerful.
        if key is not None and len(key.get_secret_value()) < 16:
            raise ValueError("the admin key must be at least 16 characters")
        return key

    @model_validator(mode="after")
    def _redis_configured(self) -> Self:
        if self.profile_store == "redis" and self.redis_url is None:
            raise ValueError("redis_url: required when profile_store is redis")
        return self

    @model_validator(mode="after")
    def _admin_key_apart(self) -> Self:
        # A write key ships inside web pages and apps; it must never open admin endpoints.
        if self.admin_key is not None and any(
            k.key.get_secret_value() == self.admin_key.get_secret_value() for k in self.write_keys
        ):
            raise ValueError("admin_key: the admin key must not also be a write key")
        return self
