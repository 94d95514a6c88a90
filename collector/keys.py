"""Write keys: where they come from, and checking them without leaking timing."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from pydantic import SecretStr

__all__ = ["DEV_KEY_FILE", "KeyRing", "keys_from_env", "load_or_create_dev_key"]

log = logging.getLogger("journeykit.collector")

DEV_KEY_FILE = "dev-write-key"
ENV_WRITE_KEYS = "JOURNEYKIT_WRITE_KEYS"


def keys_from_env(environ: dict[str, str] | None = None) -> list[SecretStr]:
    """Keys from ``JOURNEYKIT_WRITE_KEYS`` (comma-separated; blanks ignored)."""
    raw = (os.environ if environ is None else environ).get(ENV_WRITE_KEYS, "")
    return [SecretStr(k.strip()) for k in raw.split(",") if k.strip()]


def load_or_create_dev_key(data_dir: Path) -> tuple[SecretStr, bool]:
    """The embedded-default development key: reused from the data dir, or made and stored.

    Returns the key and whether it was created now. The file is readable by its owner only.
    """
    path = data_dir / DEV_KEY_FILE
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return SecretStr(key), False
    data_dir.mkdir(parents=True, exist_ok=True)
    key = "jk_dev_" + secrets.token_urlsafe(24)
    # O_EXCL: two collectors starting at once on one data dir must not both write a key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return SecretStr(path.read_text(encoding="utf-8").strip()), False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return SecretStr(key), True


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyRing:
    """The accepted write keys, compared in constant time and never logged."""

    def __init__(self, keys: Iterable[SecretStr]) -> None:
        self._digests = [_digest(k.get_secret_value()) for k in keys]
        if not self._digests:
            raise ValueError("at least one write key is required")

    def check(self, key: str | None) -> bool:
        if not key:
            return False
        candidate = _digest(key)
        # Compare against every key so the time taken does not say which one (or none) matched.
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(candidate, known)
        return found

    @staticmethod
    def from_basic_auth(header: str | None) -> str | None:
        """The user name of an HTTP Basic ``Authorization`` header, or ``None``."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value:
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, _password = decoded.partition(":")
        return user or None
