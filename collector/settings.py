"""The collector's configuration: one validated object, built from flags and environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from journeykit.sdk.protocol import MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_REQUEST_BYTES

__all__ = ["CollectorSettings", "FsyncPolicy"]

FsyncPolicy = Literal["always", "interval", "never"]


class CollectorSettings(BaseModel):
    """Everything a collector process needs to know; see docs/collector.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(default=Path("data"), description="Root of everything written.")
    write_keys: tuple[SecretStr, ...] = Field(
        min_length=1, description="Keys accepted from tracking clients."
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
    rotate_bytes: int = Field(
        default=128 * 1024 * 1024, ge=1_024, description="Start a new NDJSON file past this."
    )
    retry_after_seconds: int = Field(
        default=5, ge=1, description="Retry-After sent with 503 when the disk cannot be written."
    )
