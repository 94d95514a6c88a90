"""Checking a ledger: the hash chain line by line, then the signed checkpoints against it.

A single streaming pass with orjson and hashlib, no per-record objects. The first broken line
ends the chain check (every later line would fail too); checkpoint signatures are checked on
their own. What each failure means for a privacy officer is in docs/consent-ledger.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from journeykit.consent._canonical import GENESIS_HASH, HASH_SUFFIX_LEN, split_line
from journeykit.consent.checkpoints import Checkpoint, LedgerPublicKey, read_checkpoints
from journeykit.consent.purposes import ALL_PURPOSES
from journeykit.consent.records import LedgerError, RecordKind
from journeykit.consent.state import Source

__all__ = ["Problem", "VerificationReport", "verify_ledger"]

_PURPOSES = frozenset(p.value for p in ALL_PURPOSES)
_KINDS = frozenset(k.value for k in RecordKind)
_SOURCES = frozenset(s.value for s in Source)
_SORT = orjson.OPT_SORT_KEYS
_HASH_PREFIX = b',"hash":"'
_PREFIX_LEN = len(_HASH_PREFIX)
_NEWLINE = ord("\n")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong, with the file and line it is on."""

    file: Literal["ledger", "checkpoints"]
    line: int
    message: str
    seq: int | None = None

    def __str__(self) -> str:
        name = "ledger.ndjson" if self.file == "ledger" else "checkpoints.ndjson"
        return f"{name} line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The outcome of :func:`verify_ledger`."""

    records: int
    """Lines read that passed every check, up to the first problem."""
    last_seq: int
    last_hash: str
    checkpoints: int
    """Checkpoints whose signature verified (or all readable ones when no key was given)."""
    covered: int
    """Records up to and including the newest checkpoint that matched the ledger."""
    key_id: str | None
    """The public key used; None when signatures were not checked."""
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None


def _schema_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "not a JSON object"
    try:
        if data["kind"] not in _KINDS:
            return f"unknown record kind {data['kind']!r}"
        if data["source"] not in _SOURCES:
            return f"unknown source {data['source']!r}"
        for name in ("granted", "denied"):
            if not isinstance(data[name], list) or not _PURPOSES.issuperset(data[name]):
                valid = ", ".join(sorted(_PURPOSES))
                return f"{name} holds an unknown purpose {data[name]!r}; valid: {valid}"
        if not isinstance(data["subject"], str) or not isinstance(data["at"], str):
            return "subject and at must be text"
    except (KeyError, TypeError):
        return "a required field is missing"
    return None


_PREV_KEY = b'"prev_hash":"'
_SEQ_KEY = b',"seq":'  # never the first key ("at" sorts before it), so a comma precedes it


def _chain_check(raw: bytes, seq_value: bytes, prev_value: bytes) -> str | None:
    """The line's hash if its hash, seq and prev_hash are right, else None.

    The default hot path: tamper evidence needs only these three, and they can be read from
    the canonical bytes without parsing the JSON. Keys are sorted and every key after
    ``prev_hash`` (reference, seq, source, subject, v) holds a scalar, so the *last*
    ``"prev_hash":"`` and ``,"seq":`` are the record's own (inside a JSON string the quotes
    would be escaped). ``seq_value`` is ``<expected>,`` and ``prev_value`` is the previous
    hash and its closing quote; anything unusual returns None and the full check says why.
    """
    cut = len(raw) - 1 - HASH_SUFFIX_LEN
    if cut <= 0 or not raw.endswith(b'"}\n') or not raw.startswith(_HASH_PREFIX, cut):
        return None
    digest = hashlib.sha256(raw[:cut])
    digest.update(b"}")
    record_hash = digest.hexdigest()
    if not raw.startswith(record_hash.encode(), cut + _PREFIX_LEN):
        return None
    at = raw.rfind(_PREV_KEY, 0, cut)
    if at < 0 or not raw.startswith(prev_value, at + len(_PREV_KEY)):
        return None
    at = raw.rfind(_SEQ_KEY, 0, cut)
    if at < 0 or not raw.startswith(seq_value, at + len(_SEQ_KEY)):
        return None
    return record_hash


def _full_check(raw: bytes, expected: int, prev: str) -> str | None:
    """The line's hash if it passes every check, else None (``_check_line`` then says why).

    Also checks each record's schema and canonical form: what ``thorough=True`` asks for.
    """
    end = len(raw) - 1
    cut = end - HASH_SUFFIX_LEN
    if cut <= 0 or raw[end] != _NEWLINE or raw[cut : cut + _PREFIX_LEN] != _HASH_PREFIX:
        return None
    digest = hashlib.sha256(raw[:cut])
    digest.update(b"}")
    record_hash = raw[cut + _PREFIX_LEN : end - 2].decode("latin-1")
    if digest.hexdigest() != record_hash:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if (
        type(data) is not dict
        or data.get("seq") != expected
        or data.get("prev_hash") != prev
        or data.get("kind") not in _KINDS
        or data.get("source") not in _SOURCES
        or type(granted := data.get("granted")) is not list
        or type(denied := data.get("denied")) is not list
        or not _PURPOSES.issuperset(granted)
        or not _PURPOSES.issuperset(denied)
        or type(data.get("subject")) is not str
        or type(data.get("at")) is not str
    ):
        return None
    del data["hash"]
    if orjson.dumps(data, option=_SORT) != raw[:cut] + b"}":
        return None
    return record_hash


def _check_line(raw: bytes, expected: int, prev: str) -> tuple[str | None, int | None, str]:
    """(what is wrong or None, the seq found, the line's hash) for one raw line."""
    if not raw.endswith(b"\n"):
        return (
            f"incomplete last line ({len(raw)} bytes, no line end): a crash during a write; "
            "`journeykit consent repair` moves it aside",
            None,
            "",
        )
    parts = split_line(raw[:-1])
    if parts is None:
        return "not a ledger record (no hash at its end)", None, ""
    body, claimed = parts
    record_hash = claimed.decode("latin-1")
    if hashlib.sha256(body).hexdigest() != record_hash:
        return "content does not match its hash: the record was altered", None, record_hash
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "not valid JSON", None, record_hash
    if (why := _schema_problem(data)) is not None:
        return f"malformed record: {why}", None, record_hash
    seq = data.get("seq")
    if seq != expected:
        hint = (
            "a record before this line was deleted, or records were reordered"
            if isinstance(seq, int) and seq > expected
            else "this record repeats or was moved: records were inserted or reordered"
        )
        return f"expected seq {expected}, found seq {seq}: {hint}", seq, record_hash
    if data.get("prev_hash") != prev:
        return (
            "does not continue the chain (its prev_hash is not the hash of the line before): "
            "a record was replaced or inserted",
            seq,
            record_hash,
        )
    if orjson.dumps(data, option=_SORT) != body:
        return "not in canonical JSON form", seq, record_hash
    return None, seq, record_hash


def _snapshot(ledger: Path, checkpoints: Path) -> tuple[int, int]:
    """Sizes of both files at one instant, taken under the writers' lock."""
    try:
        fd = os.open(ledger, os.O_RDONLY)
    except FileNotFoundError:
        raise LedgerError(f"no consent ledger at {ledger}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        size = os.fstat(fd).st_size
        try:
            cp_size = checkpoints.stat().st_size
        except FileNotFoundError:
            cp_size = 0
        return size, cp_size
    finally:
        os.close(fd)  # closing drops the lock


def verify_ledger(
    ledger: Path | str,
    checkpoints: Path | str | None = None,
    *,
    public_key: LedgerPublicKey | Sequence[LedgerPublicKey] | None = None,
    thorough: bool = False,
    expect_covered: int | None = None,
) -> VerificationReport:
    """Check the ledger's hash chain and its checkpoints; never raises for tampering.

    Without ``public_key`` the checkpoints are compared with the ledger but their signatures
    are not checked (``key_id`` is None in the report). The chain check (hash, seq, prev_hash
    of every record) detects any edit, deletion, insertion or reordering; ``thorough`` also
    parses every record and checks its schema and canonical form, which finds records a
    faulty writer produced, at about half the speed. Raises LedgerError if there is no ledger.

    ``expect_covered``: the checkpoint seq the auditor saw at the last audit. Checkpoints are
    not chained to each other, so a ledger rewritten after its last checkpoint, with that
    checkpoint's line deleted, reads as intact and merely uncovered; only the auditor's
    memory of how far signatures reached exposes it.
    """
    ledger = Path(ledger)
    cp_path = ledger.with_name("checkpoints.ndjson") if checkpoints is None else Path(checkpoints)
    # Several keys: the ledger was signed under one key, then another (demo to production, a
    # rotation); each checkpoint is checked with the key that has its key id.
    keys = (
        []
        if public_key is None
        else [public_key]
        if isinstance(public_key, LedgerPublicKey)
        else list(public_key)
    )
    by_id = {k.key_id: k for k in keys}
    size, cp_size = _snapshot(ledger, cp_path)

    problems: list[Problem] = []
    by_seq: dict[int, list[Checkpoint]] = {}
    good_checkpoints = 0
    for cp in read_checkpoints(cp_path, cp_size):
        key = by_id.get(cp.key_id, keys[0]) if keys else None
        why = cp.verify(key) if key is not None else cp.problem
        if why is not None:
            problems.append(Problem("checkpoints", cp.line, why, cp.seq if cp.seq >= 0 else None))
            continue
        good_checkpoints += 1
        by_seq.setdefault(cp.seq, []).append(cp)

    chain: list[Problem] = []
    expected, prev, number, covered = 1, GENESIS_HASH, 0, 0
    with ledger.open("rb") as handle:
        remaining = size
        for number, raw in enumerate(handle, start=1):
            remaining -= len(raw)
            if remaining < 0:
                number -= 1  # a line appended after the snapshot: not ours to judge
                break
            record_hash = (
                _full_check(raw, expected, prev)
                if thorough
                else _chain_check(raw, b"%d," % expected, prev.encode("ascii") + b'"')
            )
            if record_hash is None:
                why, seq, _ = _check_line(raw, expected, prev)
                chain.append(Problem("ledger", number, why or "unreadable record", seq))
                break
            if expected in by_seq:
                bad = [cp for cp in by_seq[expected] if cp.hash != record_hash]
                if bad:
                    chain.append(Problem("ledger", number, (
                        f"differs from what checkpoint line {bad[0].line} signed for seq "
                        f"{expected}: records after seq {covered} up to this one were "
                        "rewritten"), expected))  # fmt: skip
                    break
                covered = expected
            expected += 1
            prev = record_hash
    last_seq = expected - 1
    beyond = [cp for seq, cps in by_seq.items() if seq > last_seq for cp in cps]
    if beyond and not chain:
        cp = min(beyond, key=lambda c: c.line)
        chain.append(
            Problem(
                "ledger",
                number + 1,
                (
                    f"the ledger ends at seq {last_seq} but checkpoint line {cp.line} signed seq "
                    f"{cp.seq}: records {last_seq + 1} to {cp.seq} were removed (truncated)"
                ),
            )
        )
    if expect_covered is not None and covered < expect_covered and not chain:
        after = max((cp.line for cps in by_seq.values() for cp in cps), default=0) + 1
        chain.append(
            Problem(
                "checkpoints",
                after,
                f"signed checkpoints reach seq {covered}, but seq {expect_covered} was covered "
                "at the last audit: checkpoint lines were deleted (and the records after them "
                "may have been rewritten)",
            )
        )
    return VerificationReport(
        records=last_seq,
        last_seq=last_seq,
        last_hash=prev,
        checkpoints=good_checkpoints,
        covered=covered,
        key_id=", ".join(k.key_id for k in keys) if keys else None,
        problems=tuple(chain + problems),
    )
