"""Pseudonymization keys: one current key to write with, old keys still accepted for look-ups.

Keys come from the environment or a JSON key file, never from the data they protect. Weak keys
(empty, shorter than 16 bytes, well-known placeholders) are refused. No error message, ``repr``
or ``str`` here ever contains a secret.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from journeykit.consent.errors import PseudonymKeyError

__all__ = [
    "ENV_KEY",
    "ENV_KEY_FILE",
    "ENV_KEY_ID",
    "ENV_OLD_KEYS",
    "MIN_KEY_BYTES",
    "PseudonymKey",
    "check_keys",
    "keys_from_env",
    "keys_from_file",
]

ENV_KEY: Final = "JOURNEYKIT_PSEUDONYM_KEY"
ENV_KEY_ID: Final = "JOURNEYKIT_PSEUDONYM_KEY_ID"
ENV_OLD_KEYS: Final = "JOURNEYKIT_PSEUDONYM_OLD_KEYS"
ENV_KEY_FILE: Final = "JOURNEYKIT_PSEUDONYM_KEY_FILE"
MIN_KEY_BYTES: Final = 16

_GENERATE: Final = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"

# Placeholders seen in tutorials, .env.example files and our own docs. Compared after trimming
# and lowercasing; keys made of one repeated character are refused separately.
_WELL_KNOWN: Final = frozenset(
    {
        "changeme",
        "change-me",
        "changemechangeme",
        "change-me-change-me",
        "changethis",
        "secret",
        "secretkey",
        "secret-key",
        "my-secret-key",
        "mysecretkey",
        "your-secret-key",
        "your-secret-key-here",
        "supersecretkey",
        "super-secret-key",
        "password",
        "password123456789",
        "default",
        "test",
        "testkey",
        "test-key",
        "development",
        "development-key",
        "dev-key",
        "insecure",
        "insecure-key",
        "journeykit",
        "journeykit-key",
        "journeykit-demo-key",
        "0123456789abcdef",
        "1234567890123456",
        "12345678901234567890",
        "abcdefghijklmnop",
        "xxxxxxxxxxxxxxxx",
    }
)


class PseudonymKey(BaseModel):
    """One HMAC key: an id written into every pseudonym, and the secret itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,32}$")
    """Short name (letters, digits, ``_.-``), e.g. ``k2``; written into the output tag."""
    secret: SecretStr
    """The key; its UTF-8 bytes are the HMAC key. Shown as ``**********``."""


def check_keys(keys: Sequence[PseudonymKey]) -> None:
    """Refuse an empty key list, duplicate ids, and any weak key.

    Raises:
        PseudonymKeyError: naming the key id and what is wrong, never the secret.
    """
    if not keys:
        raise PseudonymKeyError(f"no pseudonymization key; set {ENV_KEY} or {ENV_KEY_FILE}")
    seen: set[str] = set()
    for key in keys:
        if key.key_id in seen:
            raise PseudonymKeyError(f"key id {key.key_id!r} is given twice")
        seen.add(key.key_id)
        secret = key.secret.get_secret_value()
        size = len(secret.encode())
        if size == 0:
            raise PseudonymKeyError(f"key {key.key_id!r} is empty; {_GENERATE}")
        if size < MIN_KEY_BYTES:
            raise PseudonymKeyError(
                f"key {key.key_id!r} is {size} bytes, shorter than {MIN_KEY_BYTES}; {_GENERATE}"
            )
        folded = secret.strip().lower()
        if folded in _WELL_KNOWN or len(set(folded)) == 1:
            raise PseudonymKeyError(
                f"key {key.key_id!r} is a well-known placeholder, not a secret; {_GENERATE}"
            )


def keys_from_env(environ: Mapping[str, str] | None = None) -> list[PseudonymKey]:
    """Keys from ``JOURNEYKIT_PSEUDONYM_*`` variables (see docs/consent.md), current first.

    Raises:
        PseudonymKeyError: no key configured, both a key and a key file, a malformed
            ``JOURNEYKIT_PSEUDONYM_OLD_KEYS`` entry, or a weak key.
    """
    env = os.environ if environ is None else environ
    key_file = env.get(ENV_KEY_FILE, "").strip()
    secret = env.get(ENV_KEY)
    if key_file and secret is not None:
        raise PseudonymKeyError(f"set {ENV_KEY} or {ENV_KEY_FILE}, not both")
    if key_file:
        return keys_from_file(key_file)
    if secret is None:
        raise PseudonymKeyError(
            f"no pseudonymization key: set {ENV_KEY} (and optionally {ENV_KEY_ID}, "
            f"{ENV_OLD_KEYS}) or {ENV_KEY_FILE}; for the embedded demo only, use "
            "Pseudonymizer.demo()"
        )
    current_id = env.get(ENV_KEY_ID, "").strip() or "k1"
    keys = [_key(current_id, secret, ENV_KEY_ID)]
    for index, item in enumerate(filter(None, env.get(ENV_OLD_KEYS, "").split(","))):
        key_id, sep, old_secret = item.strip().partition(":")
        if not sep:
            raise PseudonymKeyError(
                f"{ENV_OLD_KEYS}: entry {index + 1} is not 'id:secret' "
                "(secrets containing ',' need a key file)"
            )
        keys.append(_key(key_id.strip(), old_secret, f"{ENV_OLD_KEYS} entry {index + 1}"))
    check_keys(keys)
    return keys


def keys_from_file(path: str | os.PathLike[str]) -> list[PseudonymKey]:
    """Keys from a JSON file ``{"current": "k2", "keys": {"k1": "...", "k2": "..."}}``.

    Raises:
        PseudonymKeyError: the file cannot be read or parsed, ``current`` is not among
            ``keys``, or a key is weak. The message names the file, never its content.
    """
    where = Path(path)
    try:
        raw = json.loads(where.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PseudonymKeyError(f"{where}: cannot read key file ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        # Deliberately no detail: a decoder's excerpt of the file could contain a secret.
        raise PseudonymKeyError(f"{where}: not a JSON key file") from None
    if not isinstance(raw, dict):
        raise PseudonymKeyError(f"{where}: expected an object with 'current' and 'keys'")
    current, table = raw.get("current"), raw.get("keys")
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise PseudonymKeyError(f"{where}: 'keys' must map key ids to secret strings")
    if not isinstance(current, str) or current not in table:
        raise PseudonymKeyError(f"{where}: 'current' must name one of the ids in 'keys'")
    order = [current, *(k for k in table if k != current)]
    keys = [_key(k, table[k], f"{where}: key id") for k in order]
    check_keys(keys)
    return keys


def _key(key_id: str, secret: str, where: str) -> PseudonymKey:
    if not _valid_id(key_id):
        raise PseudonymKeyError(
            f"{where}: key id {key_id!r} must be 1-32 letters, digits, '_', '.' or '-'"
        )
    return PseudonymKey(key_id=key_id, secret=SecretStr(secret))


def _valid_id(key_id: str) -> bool:
    return 0 < len(key_id) <= 32 and all(
        c.isascii() and (c.isalnum() or c in "_.-") for c in key_id
    )
