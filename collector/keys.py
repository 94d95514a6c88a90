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

from journeykit.collector.settings import CollectorSettings, WriteKey
from journeykit.consent import Pseudonymizer, PseudonymKey, PseudonymKeyError
from journeykit.consent import _keys as pseudonym_env

__all__ = [
    "DEV_KEY_FILE",
    "DEV_PSEUDONYM_KEY_FILE",
    "KeyRing",
    "keys_from_env",
    "load_or_create_dev_key",
    "load_pseudonymizer",
]

log = logging.getLogger("journeykit.collector")

DEV_KEY_FILE = "dev-write-key"
DEV_PSEUDONYM_KEY_FILE = "dev-pseudonym-key"
ENV_WRITE_KEYS = "JOURNEYKIT_WRITE_KEYS"


def keys_from_env(environ: dict[str, str] | None = None) -> list[SecretStr]:
    """Keys from ``JOURNEYKIT_WRITE_KEYS`` (comma-separated; blanks ignored)."""
    raw = (os.environ if environ is None else environ).get(ENV_WRITE_KEYS, "")
    return [SecretStr(k.strip()) for k in raw.split(",") if k.strip()]


def load_pseudonymizer(settings: CollectorSettings) -> Pseudonymizer:
    """The pseudonymizer the settings ask for; a stored development key only in demo mode.

    Raises PseudonymKeyError (a ValueError naming what to set) when no key is configured
    outside embedded-demo mode: hashing personal data under a made-up key would look
    protected while being unrecoverable after a restart.
    """
    if settings.pseudonym_key_file is not None:
        if settings.pseudonym_key is not None:  # as the SDK and the consent tools refuse it
            raise PseudonymKeyError(
                "set pseudonym_key or pseudonym_key_file (JOURNEYKIT_PSEUDONYM_KEY or "
                "JOURNEYKIT_PSEUDONYM_KEY_FILE), not both"
            )
        return Pseudonymizer.from_file(settings.pseudonym_key_file)
    if settings.pseudonym_key is not None:
        # Read as the library reads its environment, so one rotation serves all three.
        environ = {
            pseudonym_env.ENV_KEY: settings.pseudonym_key.get_secret_value(),
            pseudonym_env.ENV_KEY_ID: settings.pseudonym_key_id,
        }
        if settings.pseudonym_old_keys is not None:
            environ[pseudonym_env.ENV_OLD_KEYS] = settings.pseudonym_old_keys.get_secret_value()
        return Pseudonymizer(pseudonym_env.keys_from_env(environ))
    if not settings.demo_keys:
        raise PseudonymKeyError(
            "no pseudonymization key: set JOURNEYKIT_PSEUDONYM_KEY (or "
            "JOURNEYKIT_PSEUDONYM_KEY_FILE); only embedded-demo mode makes one up"
        )
    secret, created = load_or_create_dev_key(settings.data_dir, DEV_PSEUDONYM_KEY_FILE, "jk_pk_")
    if created:
        log.warning(
            "journeykit collector: DEMO pseudonymization key generated in %s; "
            "set JOURNEYKIT_PSEUDONYM_KEY for real data",
            settings.data_dir / DEV_PSEUDONYM_KEY_FILE,
        )
    return Pseudonymizer([PseudonymKey(key_id="dev", secret=secret)])


def load_or_create_dev_key(
    data_dir: Path, name: str = DEV_KEY_FILE, prefix: str = "jk_dev_"
) -> tuple[SecretStr, bool]:
    """An embedded-default development key: reused from the data dir, or made and stored.

    Returns the key and whether it was created now. The file is readable by its owner only.
    """
    path = data_dir / name
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return SecretStr(key), False
    data_dir.mkdir(parents=True, exist_ok=True)
    key = prefix + secrets.token_urlsafe(24)
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

    def __init__(self, keys: Iterable[SecretStr | WriteKey]) -> None:
        self._digests = [
            _digest((k.key if isinstance(k, WriteKey) else k).get_secret_value()) for k in keys
        ]
        if not self._digests:
            raise ValueError("at least one write key is required")

    def check(self, key: str | None) -> bool:
        """Whether ``key`` is one of the accepted keys."""
        return self.find(key) is not None

    def find(self, key: str | None) -> int | None:
        """The position of ``key`` among the keys given to the ring, or ``None``."""
        if not key:
            return None
        candidate = _digest(key)
        # Compare against every key, without stopping at a match, so the time taken does not
        # say which one (or none) matched. Digests are distinct, so at most one matches.
        found = -1
        for index, known in enumerate(self._digests):
            match = hmac.compare_digest(candidate, known)
            found = max(found, index * match - (not match))
        return None if found < 0 else found

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
