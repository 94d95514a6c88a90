"""Ed25519-signed checkpoints: a signed note of "record seq N has hash H" every so often.

A checkpoint line is the canonical JSON (see ``_canonical``) of::

    {"v": 1, "seq": N, "hash": H, "count": N, "at": T, "key_id": K, "sig": S}

where ``sig`` is the base64 Ed25519 signature over the canonical JSON of the same object
without ``sig``. ``key_id`` is ``ed25519:`` and the first 16 hex digits of the SHA-256 of the
raw 32-byte public key. cryptography is imported on first use so that importing
``journeykit.consent`` stays light for the SDK.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from journeykit.consent._canonical import canonical_json, format_time
from journeykit.consent._paths import LedgerPaths
from journeykit.consent.records import LedgerError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "ENV_SIGNING_KEY_FILE",
    "Checkpoint",
    "InsecureKeyFileWarning",
    "LedgerPublicKey",
    "LedgerSigner",
    "checkpoint_line",
    "read_checkpoints",
]

ENV_SIGNING_KEY_FILE = "JOURNEYKIT_LEDGER_SIGNING_KEY_FILE"


class InsecureKeyFileWarning(UserWarning):
    """A signing key file that people other than its owner's group could read."""


def _key_id(raw_public: bytes) -> str:
    return "ed25519:" + hashlib.sha256(raw_public).hexdigest()[:16]


class LedgerPublicKey:
    """The public half of a signing key: what an auditor holds to check checkpoints."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        from cryptography.hazmat.primitives import serialization

        self._key = key
        self._raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = _key_id(self._raw)

    @classmethod
    def from_bytes(cls, data: bytes, *, origin: str = "public key") -> LedgerPublicKey:
        """A key from PEM (SubjectPublicKeyInfo) or the raw 32 bytes."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if len(data) == 32:
            return cls(Ed25519PublicKey.from_public_bytes(data))
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            raise LedgerError(f"{origin}: not a PEM or raw 32-byte Ed25519 public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise LedgerError(f"{origin}: not an Ed25519 key ({type(key).__name__})")
        return cls(key)

    @classmethod
    def from_file(cls, path: Path | str) -> LedgerPublicKey:
        """The key stored in ``path`` (PEM or raw 32 bytes)."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise LedgerError(f"cannot read public key {path}: {exc.strerror}") from None
        return cls.from_bytes(data, origin=str(path))

    def pem(self) -> bytes:
        """The key as PEM, to hand to an auditor."""
        from cryptography.hazmat.primitives import serialization

        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``message``."""
        from cryptography.exceptions import InvalidSignature

        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class LedgerSigner:
    """The private key that signs checkpoints; ``demo`` marks a generated, unmanaged key."""

    def __init__(self, key: Ed25519PrivateKey, *, demo: bool = False, origin: str = "") -> None:
        self._key = key
        self.demo = demo
        self.origin = origin
        self.public_key = LedgerPublicKey(key.public_key())
        self.key_id = self.public_key.key_id

    @classmethod
    def generate(cls) -> LedgerSigner:
        """A fresh key held in memory only (tests, throwaway ledgers)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate(), origin="generated in memory")

    @classmethod
    def from_file(cls, path: Path | str, *, demo: bool = False) -> LedgerSigner:
        """The key in ``path``: PEM (PKCS#8, unencrypted) or the raw 32-byte seed.

        Refuses a file that any user may read; warns when its group may.
        """
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = Path(path)
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except OSError as exc:
            raise LedgerError(f"cannot read signing key {path}: {exc.strerror}") from None
        if mode & stat.S_IRWXO:
            raise LedgerError(
                f"signing key {path} is accessible to every user (mode {stat.filemode(mode)}); "
                f"run: chmod 600 {path}"
            )
        if mode & stat.S_IRWXG:
            warnings.warn(
                f"signing key {path} is readable by its group ({stat.filemode(mode)}); "
                "chmod 600 is safer",
                InsecureKeyFileWarning,
                stacklevel=2,
            )
        if len(data) == 32:
            return cls(Ed25519PrivateKey.from_private_bytes(data), demo=demo, origin=str(path))
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise LedgerError(
                f"{path}: not an unencrypted PEM or raw 32-byte Ed25519 private key"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise LedgerError(f"{path}: not an Ed25519 key ({type(key).__name__})")
        return cls(key, demo=demo, origin=str(path))

    @classmethod
    def load_or_create_demo(cls, data_dir: Path | str) -> LedgerSigner:
        """The embedded-demo key under ``<data-dir>/consent/``, made (mode 0600) if missing.

        A demo key lives beside the ledger it signs, so it proves nothing against someone who
        can write that directory; production sets ``JOURNEYKIT_LEDGER_SIGNING_KEY_FILE``.
        """
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = LedgerPaths.under(data_dir).demo_key
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it first; use theirs
            else:
                with os.fdopen(fd, "wb") as out:
                    out.write(pem)
                    out.flush()
                    os.fsync(out.fileno())
        return cls.from_file(path, demo=True)

    @classmethod
    def configured(
        cls,
        data_dir: Path | str,
        *,
        environ: Mapping[str, str] | None = None,
        create_demo: bool = False,
    ) -> LedgerSigner | None:
        """The key named by ``JOURNEYKIT_LEDGER_SIGNING_KEY_FILE``, else the demo key.

        The demo key is made only when ``create_demo``; otherwise None if there is none.
        """
        env = os.environ if environ is None else environ
        if name := env.get(ENV_SIGNING_KEY_FILE, "").strip():
            return cls.from_file(name)
        if create_demo or LedgerPaths.under(data_dir).demo_key.exists():
            return cls.load_or_create_demo(data_dir)
        return None

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of ``message``."""
        return self._key.sign(message)


def checkpoint_line(signer: LedgerSigner, seq: int, record_hash: str, at: datetime) -> bytes:
    """The signed checkpoint line (with newline) saying record ``seq`` has ``record_hash``."""
    body: dict[str, Any] = {
        "v": 1,
        "seq": seq,
        "hash": record_hash,
        "count": seq,
        "at": format_time(at),
        "key_id": signer.key_id,
    }
    body["sig"] = base64.b64encode(signer.sign(canonical_json(body))).decode("ascii")
    return canonical_json(body) + b"\n"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint as read back; ``problem`` says why it cannot be used, if it cannot."""

    line: int
    seq: int
    hash: str
    count: int
    at: str
    key_id: str
    signature: bytes
    signed_bytes: bytes
    problem: str | None = None

    def verify(self, key: LedgerPublicKey) -> str | None:
        """None when ``key`` signed this checkpoint, else what is wrong, in words."""
        if self.problem:
            return self.problem
        if key.verify(self.signature, self.signed_bytes):
            return None
        if self.key_id != key.key_id:
            return (
                f"signed with key {self.key_id}, not with the public key given ({key.key_id}): "
                "wrong public key, or a checkpoint forged with another key"
            )
        return "signature does not verify: the checkpoint was forged or altered"


def _parse_checkpoint(line: bytes, number: int) -> Checkpoint:
    try:
        data = orjson.loads(line)
        body = {k: v for k, v in data.items() if k != "sig"}
        return Checkpoint(
            line=number,
            seq=int(data["seq"]),
            hash=str(data["hash"]),
            count=int(data["count"]),
            at=str(data["at"]),
            key_id=str(data["key_id"]),
            signature=base64.b64decode(data["sig"], validate=True),
            signed_bytes=canonical_json(body),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError,
            binascii.Error):  # fmt: skip
        return Checkpoint(number, -1, "", 0, "", "", b"", b"", problem="unreadable checkpoint")


def read_checkpoints(path: Path, size: int | None = None) -> Iterator[Checkpoint]:
    """The checkpoints in ``path`` (none if it does not exist), reading at most ``size`` bytes."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        data = handle.read() if size is None else handle.read(size)
    lines = data.splitlines()
    for number, line in enumerate(lines, start=1):
        if line.strip():
            checkpoint = _parse_checkpoint(line, number)
            if checkpoint.problem and number == len(lines) and not data.endswith(b"\n"):
                checkpoint = replace(
                    checkpoint,
                    problem="incomplete last checkpoint line: a crash while it was written "
                    "(not tampering); `journeykit consent repair` moves it aside",
                )
            yield checkpoint
