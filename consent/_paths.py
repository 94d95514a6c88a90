"""Where the ledger's files live under a data directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["LedgerPaths"]


@dataclass(frozen=True, slots=True)
class LedgerPaths:
    """The ledger's files under ``<data-dir>/consent/``."""

    directory: Path

    @classmethod
    def under(cls, data_dir: Path | str) -> LedgerPaths:
        """The paths for the data directory ``data_dir``."""
        return cls(Path(data_dir) / "consent")

    @property
    def ledger(self) -> Path:
        return self.directory / "ledger.ndjson"

    @property
    def checkpoints(self) -> Path:
        return self.directory / "checkpoints.ndjson"

    @property
    def demo_key(self) -> Path:
        return self.directory / "ledger-signing-key.DEMO.pem"
