"""The SDK's configuration: one validated object, never module globals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from journeykit.consent import DEFAULT_POLICY, GatePolicy, PseudonymRules, Regime
from journeykit.sdk.protocol import MAX_BATCH_EVENTS, MAX_REQUEST_BYTES

__all__ = ["DEFAULT_HOST", "ClientSettings"]

DEFAULT_HOST = "http://127.0.0.1:8787"

PositiveSeconds = Annotated[float, Field(gt=0, le=86_400)]


ENVELOPE_BYTES = 64
"""The most ``{"batch":[``, ``],"sentAt":"<time>"}`` add around a batch's events (53 now)."""


class ClientSettings(BaseModel):
    """Every option of :class:`~journeykit.sdk.Client`, validated when the client is built.

    A misspelt option is an error, not a silently ignored keyword.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    write_key: SecretStr = Field(description="The collector write key (HTTP Basic user name).")
    host: str = Field(default=DEFAULT_HOST, description="Collector base URL.")
    max_queue_size: int = Field(
        default=10_000, ge=1, description="Events held in memory before new ones are dropped."
    )
    batch_size: int = Field(
        default=100, ge=1, le=MAX_BATCH_EVENTS, description="Most events in one request."
    )
    max_backlog_batch: int = Field(
        default=1_000,
        ge=1,
        le=MAX_BATCH_EVENTS,
        description="Most events in one request while more than batch_size are waiting: a "
        "backlog drains in fewer, larger requests (never below batch_size, always under "
        "max_batch_bytes).",
    )
    max_batch_bytes: int = Field(
        default=475_000,
        ge=1_024,
        le=MAX_REQUEST_BYTES,
        description="Largest uncompressed request body, the batch's envelope included; keeps "
        "under the collector's limit.",
    )
    flush_interval: PositiveSeconds = Field(
        default=0.5, description="Longest time an event waits in memory before it is sent."
    )
    timeout: PositiveSeconds = Field(default=10.0, description="Per-request network timeout.")
    gzip: bool = Field(default=True, description="Compress request bodies.")
    max_retries: int = Field(
        default=30,
        ge=0,
        le=1_000,
        description="Retries of one batch after its first attempt; with the default backoff, "
        "retry_budget is the limit that binds.",
    )
    retry_budget: PositiveSeconds = Field(
        default=60.0, description="Total time one batch may spend being retried."
    )
    max_backoff: PositiveSeconds = Field(
        default=5.0,
        description="Cap on one backoff wait chosen by the client (full jitter below it).",
    )
    max_retry_after: PositiveSeconds = Field(
        default=300.0, description="Cap on a server's Retry-After."
    )
    exit_timeout: Annotated[float, Field(ge=0, le=60)] = Field(
        default=1.0,
        description="How long interpreter exit waits for queued events to be delivered.",
    )
    spool_dir: Path | None = Field(
        default=None,
        description="Directory of the durable spool: batches that cannot be delivered are "
        "kept there and replayed later, also by a new client on the same directory.",
    )
    spool_max_bytes: int = Field(
        default=100_000_000,
        ge=1_024,
        description="Size bound of the spool; past it the oldest records are dropped (spool_full).",
    )
    spool_after: PositiveSeconds = Field(
        default=5.0,
        description="With a spool: how long a batch is retried in memory before it is "
        "spooled (retries then go on from the spool, with no time limit).",
    )
    decision_ttl: Annotated[float, Field(ge=0, le=86_400)] = Field(
        default=5.0,
        description="How long decide() reuses a decision before asking the collector again "
        "(0: never cached).",
    )
    decision_timeout: PositiveSeconds = Field(
        default=1.0,
        description="Network timeout of one decide() request; past it the answer is "
        "personalization='unavailable'.",
    )
    decision_cache_size: int = Field(
        default=10_000, ge=1, description="Decisions kept for decide(), least recently used out."
    )
    sync_mode: bool = Field(
        default=False,
        description="Deliver each event on the caller's thread before the call returns "
        "(serverless); no background thread, no queue.",
    )
    send: bool = Field(
        default=True,
        description="False: validate, gate and pseudonymize as usual, then count the event in "
        "stats().not_sent instead of sending it (tests, development).",
    )
    strict: bool = Field(
        default=False,
        description="Raise on invalid calls (development) instead of dropping and counting.",
    )
    consent_regime: Regime | None = Field(
        default=None,
        description="How to treat a subject with no consent state: opt_in (drop, the gate "
        "policy's default) or opt_out (send). Overrides gate_policy.regime.",
    )
    gate_policy: GatePolicy = Field(
        default=DEFAULT_POLICY,
        description="Which purposes each event needs and which fields go when one is denied.",
    )
    max_consent_subjects: int = Field(
        default=100_000,
        ge=1,
        description="User and anonymous ids whose consent is kept in memory (least recently "
        "used forgotten first).",
    )
    pseudonymize: bool = Field(
        default=True,
        description="Pseudonymize personal fields (pseudonym_rules) before events are queued.",
    )
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description="HMAC key; default: JOURNEYKIT_PSEUDONYM_KEY and friends.",
    )
    pseudonym_key_id: str = Field(
        default="k1",
        pattern=r"^[A-Za-z0-9_.\-]{1,32}$",
        description="The key's id, written into pseudonyms: the collector's "
        "(JOURNEYKIT_PSEUDONYM_KEY_ID), or what it stores will not match what it looks up.",
    )
    pseudonym_rules: PseudonymRules = Field(
        default_factory=PseudonymRules,
        description="Fields to pseudonymize: emails and phones in traits and properties, "
        "context.ip truncated.",
    )

    @model_validator(mode="after")
    def _one_regime(self) -> ClientSettings:
        regime = self.consent_regime
        if regime not in (None, self.gate_policy.regime) and (
            "regime" in self.gate_policy.model_fields_set
        ):
            raise ValueError("consent_regime contradicts gate_policy.regime; set one")
        return self

    @property
    def events_bytes(self) -> int:
        """Bytes a batch's events (and the commas joining them) may take in one request.

        ``max_batch_bytes`` less the envelope ``{"batch":[...],"sentAt":"..."}`` around them:
        a body of exactly ``max_batch_bytes`` still fits the collector's limit.
        """
        return self.max_batch_bytes - ENVELOPE_BYTES

    @property
    def policy(self) -> GatePolicy:
        """The gate policy in force: ``gate_policy`` with ``consent_regime`` applied."""
        if self.consent_regime is None or self.consent_regime == self.gate_policy.regime:
            return self.gate_policy
        return self.gate_policy.model_copy(update={"regime": self.consent_regime})

    @field_validator("host")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("host must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("write_key")
    @classmethod
    def _non_empty_key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("write_key must not be empty")
        return value
