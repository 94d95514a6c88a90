"""The decisions' configuration: which store, which rules, how often RFM cut points refresh."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["DecisionSettings"]


class DecisionSettings(BaseModel):
    """Everything the decision engine needs besides the data dir; see docs/decisions.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="False: no profiles, no decisions.")
    backend: Literal["sqlite", "redis"] = Field(
        default="sqlite", description="sqlite: one host; redis: shared by processes and hosts."
    )
    redis_url: SecretStr | None = Field(
        default=None, description="redis://127.0.0.1:6379/0 (may hold a password)."
    )
    redis_prefix: str = Field(
        default="jk:", pattern=r"^[A-Za-z0-9_.:-]{0,32}$", description="Prefix of every key."
    )
    redis_timeout_seconds: float = Field(
        default=0.5, gt=0, description="Socket timeout; past it decisions say unavailable."
    )
    retry_unavailable_seconds: float = Field(
        default=5.0, ge=0, description="After an outage, how long before the store is tried again."
    )
    rules_file: Path | None = Field(
        default=None, description="A TOML rules file; None: the packaged default rules."
    )
    rfm_refresh_seconds: float = Field(
        default=300.0, gt=0, description="How often the RFM quintile cut points are recomputed."
    )
    rfm_young_refresh_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often cut points are checked, and recomputed while the population "
        "is young: none yet, fewer than rfm_min_customers, or 25% more customers since.",
    )
    rfm_min_customers: int = Field(
        default=10,
        ge=1,
        description="Below this many customers, no RFM scores (quintiles of "
        "a handful are noise: a lone customer would be 'hibernating').",
    )
    recommendations: int = Field(default=5, ge=0, le=50, description="Top K per decision.")
    session_seconds: float = Field(
        default=1_800.0, gt=0, description="Views this close together count as viewed together."
    )
    item_cache_entries: int = Field(
        default=250_000,
        ge=0,
        description="SQLite: item-list entries (about 150 bytes each) kept in the process "
        "between writes of item statistics; 0: read them for every decision.",
    )
    sqlite_busy_timeout_seconds: float = Field(
        default=5.0, gt=0, description="How long a process waits for another's write lock."
    )
    flush_interval_seconds: float = Field(
        default=0.25,
        ge=0,
        description="Write-behind: queued profile updates reach the store within this bound "
        "(other processes see them then); 0: every update is written at once.",
    )
    flush_events: int = Field(
        default=1_000,
        ge=1,
        description="Flush at once when this many events are queued (the call that queued "
        "them folds and writes them: on the collector, a pause of its event loop of about "
        "4 us per event).",
    )
    stats_flush_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Co-occurrence and popularity counts, aggregated in memory, are written "
        "this often (and on flush()/close()).",
    )
    pending_limit: int = Field(
        default=100_000,
        ge=1,
        description="While the store is unreachable, events queued beyond this many are "
        "dropped and counted (store_unavailable).",
    )

    @model_validator(mode="after")
    def _redis_needs_url(self) -> Self:
        if self.backend == "redis" and self.redis_url is None:
            raise ValueError("redis_url: required when backend is redis")
        return self
