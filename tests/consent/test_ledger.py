"""The consent ledger: appends, the hash chain, checkpoints, tampering, crashes, processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from journeykit.consent._canonical import GENESIS_HASH, encode_line
from journeykit.consent.checkpoints import InsecureKeyFileWarning, LedgerSigner
from journeykit.consent.ledger import ConsentChange, ConsentLedger
from journeykit.consent.records import LedgerError, TornLedgerError
from journeykit.consent.repair import repair_checkpoints, repair_ledger
from journeykit.consent.verify import VerificationReport, verify_ledger

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def signer() -> LedgerSigner:
    return LedgerSigner.generate()


@pytest.fixture
def ledger_path(tmp_path: Path, signer: LedgerSigner) -> Path:
    """Ten records; checkpoints after records 4 and 8, and 10 on close."""
    path = tmp_path / "consent" / "ledger.ndjson"
    with ConsentLedger(path, signer=signer, checkpoint_every=4) as ledger:
        for i in range(10):
            ledger.append(
                f"hmac-sha256:k1:{i:064x}",
                granted=["analytics"],
                denied=["marketing"] if i % 2 else [],
                source="banner",
                method="accept_click",
                notice_version="2024-03",
                ip="203.0.113.77",
                user_agent="Mozilla/5.0 Ünïcode",
                at=T0 + timedelta(minutes=i),
            )
    return path


def _verify(path: Path, signer: LedgerSigner) -> VerificationReport:
    return verify_ledger(path, public_key=signer.public_key)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_intact_ledger_verifies_with_full_checkpoint_coverage(
    ledger_path: Path, signer: LedgerSigner
) -> None:
    report = _verify(ledger_path, signer)
    assert report.ok, report.problems
    assert (report.records, report.checkpoints, report.covered) == (10, 3, 10)
    assert report.key_id == signer.key_id


def test_hash_is_sha256_of_canonical_json_without_hash(ledger_path: Path) -> None:
    for line in _lines(ledger_path):
        record = json.loads(line)
        claimed = record.pop("hash")
        canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(canonical.encode()).hexdigest() == claimed
    first = json.loads(_lines(ledger_path)[0])
    assert first["prev_hash"] == "0" * 64
    assert first["collected_via"]["ip"] == "203.0.113.0"  # never the full address


def test_any_single_byte_change_in_a_record_is_detected_on_that_line(
    ledger_path: Path, signer: LedgerSigner
) -> None:
    original = ledger_path.read_bytes()
    lines = _lines(ledger_path)
    start = sum(len(line) for line in lines[:4])  # line 5
    for offset in range(len(lines[4])):
        data = bytearray(original)
        data[start + offset] ^= 0x01
        ledger_path.write_bytes(bytes(data))
        report = _verify(ledger_path, signer)
        assert not report.ok, f"byte {offset} of line 5 changed, still verified"
        assert report.first_problem is not None
        assert report.first_problem.file == "ledger"
        assert report.first_problem.line == 5, (offset, str(report.first_problem))


def test_deleted_record_is_named(ledger_path: Path, signer: LedgerSigner) -> None:
    lines = _lines(ledger_path)
    ledger_path.write_bytes(b"".join(lines[:4] + lines[5:]))
    problem = _verify(ledger_path, signer).first_problem
    assert problem is not None
    assert problem.line == 5
    assert "expected seq 5, found seq 6" in problem.message


def test_reordered_records_are_named(ledger_path: Path, signer: LedgerSigner) -> None:
    lines = _lines(ledger_path)
    lines[5], lines[6] = lines[6], lines[5]
    ledger_path.write_bytes(b"".join(lines))
    problem = _verify(ledger_path, signer).first_problem
    assert problem is not None
    assert (problem.line, problem.seq) == (6, 7)


def test_inserted_copy_is_named(ledger_path: Path, signer: LedgerSigner) -> None:
    lines = _lines(ledger_path)
    ledger_path.write_bytes(b"".join([*lines[:6], lines[2], *lines[6:]]))
    problem = _verify(ledger_path, signer).first_problem
    assert problem is not None
    assert problem.line == 7
    assert "inserted or reordered" in problem.message


def test_inserted_forgery_with_valid_hash_breaks_the_next_link(
    ledger_path: Path, signer: LedgerSigner
) -> None:
    lines = _lines(ledger_path)
    forged = json.loads(lines[5])
    del forged["hash"]
    forged["subject"] = "someone-else"
    forged_line, _ = encode_line(forged)  # right seq and prev_hash, a valid hash of its own
    ledger_path.write_bytes(b"".join([*lines[:5], forged_line, *lines[5:]]))
    problem = _verify(ledger_path, signer).first_problem
    assert problem is not None
    assert problem.line == 7  # the genuine seq 6 now follows the forgery


def _rewrite_from(lines: list[bytes], first: int) -> list[bytes]:
    """Records from index ``first`` on changed, with a consistent recomputed chain."""
    out = lines[:first]
    prev = json.loads(lines[first - 1])["hash"]
    for line in lines[first:]:
        record = json.loads(line)
        del record["hash"]
        record["granted"], record["denied"] = [], ["analytics"]
        record["prev_hash"] = prev
        encoded, prev = encode_line(record)
        out.append(encoded)
    return out


def test_rewritten_chain_is_caught_by_the_checkpoint(
    ledger_path: Path, signer: LedgerSigner
) -> None:
    ledger_path.write_bytes(b"".join(_rewrite_from(_lines(ledger_path), 5)))
    problem = _verify(ledger_path, signer).first_problem
    assert problem is not None
    assert problem.line == 8
    assert "checkpoint line 2" in problem.message
    assert "rewritten" in problem.message


def test_truncation_after_a_checkpoint(ledger_path: Path, signer: LedgerSigner) -> None:
    ledger_path.write_bytes(b"".join(_lines(ledger_path)[:9]))
    report = _verify(ledger_path, signer)
    assert report.first_problem is not None
    assert "truncated" in report.first_problem.message
    assert "ends at seq 9" in report.first_problem.message
    ledger_path.write_bytes(b"")
    assert not _verify(ledger_path, signer).ok


def test_forged_checkpoint_signature(ledger_path: Path, signer: LedgerSigner) -> None:
    cp_path = ledger_path.with_name("checkpoints.ndjson")
    cps = _lines(cp_path)
    record = json.loads(cps[1])
    record["hash"] = "f" * 64  # moved without the key: the signature no longer fits
    cps[1] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    cp_path.write_bytes(b"".join(cps))
    report = _verify(ledger_path, signer)
    assert not report.ok
    assert report.first_problem is not None
    assert report.first_problem.file == "checkpoints"
    assert report.first_problem.line == 2
    assert "forged or altered" in report.first_problem.message


def test_wrong_public_key_fails(ledger_path: Path) -> None:
    report = verify_ledger(ledger_path, public_key=LedgerSigner.generate().public_key)
    assert not report.ok
    assert report.first_problem is not None
    assert "not with the public key given" in report.first_problem.message


def test_torn_last_line_is_reported_refused_and_repaired(
    ledger_path: Path, signer: LedgerSigner
) -> None:
    with ledger_path.open("ab") as handle:
        handle.write(b'{"at":"2024-05-01T1')  # a crash in the middle of a write
    report = _verify(ledger_path, signer)
    assert report.first_problem is not None
    assert report.first_problem.line == 11
    assert "incomplete last line" in report.first_problem.message
    with pytest.raises(TornLedgerError, match="line 11"), ConsentLedger(ledger_path) as ledger:
        ledger.append("x", granted=["analytics"])

    result = repair_ledger(ledger_path)
    assert result.repaired
    assert result.line == 11
    assert result.moved_to is not None
    assert result.moved_to.read_bytes() == b'{"at":"2024-05-01T1'
    assert _verify(ledger_path, signer).ok
    assert not repair_ledger(ledger_path).repaired
    with ConsentLedger(ledger_path, signer=signer) as ledger:
        assert ledger.append("x", granted=["analytics"]).seq == 11
    assert _verify(ledger_path, signer).ok


_WRITER = textwrap.dedent(
    """
    import sys
    from journeykit.consent.checkpoints import LedgerSigner
    from journeykit.consent.ledger import ConsentChange, ConsentLedger

    path, key, worker = sys.argv[1], sys.argv[2], int(sys.argv[3])
    signer = LedgerSigner.from_file(key)
    with ConsentLedger(path, signer=signer, checkpoint_every=7) as ledger:
        for i in range(0, 60, 6):
            if i % 12:
                ledger.append(f"s{worker}", granted=["analytics"], reference=f"w{worker}-{i}")
                i_end = i + 1
            else:
                i_end = i
            ledger.append_many(
                ConsentChange(subject=f"s{worker}", denied=["marketing"],
                              reference=f"w{worker}-{j}")
                for j in range(i_end, i + 6)
            )
    """
)


def test_concurrent_appends_from_processes_keep_one_chain(tmp_path: Path) -> None:
    key = tmp_path / "signing.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    path = tmp_path / "consent" / "ledger.ndjson"
    workers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(key), str(w)])
        for w in range(4)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0, 0]
    report = verify_ledger(path, public_key=LedgerSigner.from_file(key).public_key)
    assert report.ok, report.problems
    assert report.records == 240
    references = {json.loads(line)["reference"] for line in _lines(path)}
    assert references == {f"w{w}-{i}" for w in range(4) for i in range(60)}
    assert report.checkpoints >= 4
    assert report.covered == 240  # each writer checkpoints what is uncovered when it closes


def test_append_many_is_one_batch_and_returns_records(tmp_path: Path) -> None:
    path = tmp_path / "ledger.ndjson"
    with ConsentLedger(path, durability="interval") as ledger:
        records = ledger.append_many(
            ConsentChange(subject=f"s{i}", granted=["analytics"]) for i in range(3)
        )
        assert ledger.append_many([]) == []
        ledger.flush()
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[1].prev_hash == records[0].hash
    assert verify_ledger(path).ok
    assert verify_ledger(path).key_id is None  # no key: signatures not checked


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"granted": ["analytics", "telemetry"]}, "valid purposes are: necessary, analytics"),
        ({"granted": ["analytics"], "denied": ["analytics"]}, "both granted and denied"),
        ({"denied": ["necessary"]}, "'necessary' cannot be denied"),
        ({"granted": ["analytics"], "source": "fax"}, "valid sources are: banner, api"),
        ({"granted": ["analytics"], "ip": "not-an-ip"}, "not an IP address"),
        ({}, "must grant or deny at least one purpose"),
        ({"granted": ["analytics"], "withdrawal": True}, "cannot grant"),
        ({"granted": ["analytics"], "kind": "gossip"}, "valid kinds are: consent"),
    ],
)
def test_bad_records_are_refused(tmp_path: Path, fields: dict[str, object], message: str) -> None:
    with ConsentLedger(tmp_path / "ledger.ndjson") as ledger:
        with pytest.raises(LedgerError, match=message):
            ledger.append("subject-1", **fields)
        with pytest.raises(LedgerError, match="subject"):
            ledger.append("  ", granted=["analytics"])
    assert not (tmp_path / "ledger.ndjson").exists()  # nothing half-written


def test_withdrawal_without_purposes_withdraws_all_but_necessary(tmp_path: Path) -> None:
    with ConsentLedger(tmp_path / "ledger.ndjson") as ledger:
        record = ledger.append("s", withdrawal=True, source="api", ip="2001:db8:1:2::7")
    assert record.denied == ("analytics", "personalization", "marketing")
    assert record.ip == "2001:db8:1::"


def test_signing_key_file_permissions(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    with pytest.raises(LedgerError, match="chmod 600"):
        LedgerSigner.from_file(key)
    key.chmod(0o640)
    with pytest.warns(InsecureKeyFileWarning):
        LedgerSigner.from_file(key)
    key.chmod(0o600)
    key.write_bytes(b"not a key")
    with pytest.raises(LedgerError, match="not an unencrypted PEM"):
        LedgerSigner.from_file(key)


def test_open_makes_a_private_demo_key_and_reuses_it(tmp_path: Path) -> None:
    with ConsentLedger.open(tmp_path, environ={}) as ledger:
        ledger.append("s", granted=["analytics"])
        assert ledger.signer is not None
        assert ledger.signer.demo
        key_id = ledger.signer.key_id
    demo = tmp_path / "consent" / "ledger-signing-key.DEMO.pem"
    assert demo.stat().st_mode & 0o777 == 0o600
    again = LedgerSigner.configured(tmp_path, environ={})
    assert again is not None
    assert again.key_id == key_id
    assert verify_ledger(tmp_path / "consent" / "ledger.ndjson", public_key=again.public_key).ok


def test_missing_ledger_is_a_ledger_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no consent ledger"):
        verify_ledger(tmp_path / "nothing.ndjson")


def test_thorough_verify_finds_a_well_chained_but_malformed_record(tmp_path: Path) -> None:
    # A faulty writer (not an attacker) chained a record with an unknown purpose correctly.
    path = tmp_path / "consent" / "ledger.ndjson"
    with ConsentLedger(path) as ledger:
        ledger.append("hmac-sha256:k1:" + "a" * 64, granted=["analytics"], source="banner")
    (first,) = _lines(path)
    record = json.loads(first)
    bad = {**record, "seq": 2, "prev_hash": record["hash"], "granted": ["telepathy"]}
    del bad["hash"]
    line, _ = encode_line(bad)
    path.write_bytes(first + line)
    assert verify_ledger(path).ok  # the chain itself is intact
    problem = verify_ledger(path, thorough=True).first_problem
    assert problem is not None
    assert problem.line == 2
    assert "telepathy" in problem.message


def test_an_append_the_disk_refuses_leaves_no_torn_line(
    ledger_path: Path, signer: LedgerSigner
) -> None:
    resource = pytest.importorskip("resource")  # POSIX; Python ignores SIGXFSZ
    size = ledger_path.stat().st_size
    with ConsentLedger(ledger_path, signer=signer, checkpoint_every=1000) as ledger:
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        # Room for part of a record: the write stops there with EFBIG, as ENOSPC would.
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, hard))
        try:
            with pytest.raises(OSError, match="too large"):
                ledger.append("hmac-sha256:k1:" + "a" * 64, granted=["analytics"], at=T0)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        assert ledger_path.stat().st_size == size
        record = ledger.append("hmac-sha256:k1:" + "a" * 64, granted=["analytics"], at=T0)
    assert record.seq == 11
    assert _verify(ledger_path, signer).ok


def test_a_torn_checkpoint_line_is_moved_aside_not_glued_to(
    ledger_path: Path, signer: LedgerSigner
) -> None:
    # Power cut while the last checkpoint was written; the collector restarts and appends.
    checkpoints = ledger_path.with_name("checkpoints.ndjson")
    whole = checkpoints.read_bytes()
    checkpoints.write_bytes(whole[:-40])
    with ConsentLedger(ledger_path, signer=signer, checkpoint_every=1) as ledger:
        ledger.append("hmac-sha256:k1:" + "b" * 64, granted=["analytics"], at=T0)
    report = _verify(ledger_path, signer)
    assert report.ok, report
    [aside] = ledger_path.parent.glob("checkpoints.ndjson.torn-*")
    assert aside.read_bytes() == whole[:-40][whole[:-40].rfind(b"\n") + 1 :]


def test_repair_moves_a_torn_checkpoint_line_aside(ledger_path: Path, signer: LedgerSigner) -> None:
    checkpoints = ledger_path.with_name("checkpoints.ndjson")
    checkpoints.write_bytes(checkpoints.read_bytes()[:-40])
    report = _verify(ledger_path, signer)
    assert not report.ok
    assert "incomplete last checkpoint line" in str(report)
    assert not repair_ledger(ledger_path).repaired  # the ledger itself is whole
    assert repair_checkpoints(checkpoints).repaired
    assert _verify(ledger_path, signer).ok


def test_a_ledger_signed_under_two_keys_verifies_with_both(tmp_path: Path) -> None:
    # Demo key first, then the production key, as docs/consent-ledger.md advises.
    path = tmp_path / "consent" / "ledger.ndjson"
    demo, production = LedgerSigner.generate(), LedgerSigner.generate()
    with ConsentLedger(path, signer=demo) as ledger:
        ledger.append("hmac-sha256:k1:" + "c" * 64, granted=["analytics"], at=T0)
    with ConsentLedger(path, signer=production) as ledger:
        ledger.append("hmac-sha256:k1:" + "d" * 64, granted=["analytics"], at=T0)
    assert not verify_ledger(path, public_key=production.public_key).ok
    both = verify_ledger(path, public_key=[production.public_key, demo.public_key])
    assert both.ok, both
    assert both.covered == 2


def test_deleted_trailing_checkpoints_are_caught_by_the_auditors_last_seq(
    ledger_path: Path, signer: LedgerSigner
) -> None:
    # Rewrite a record after the last checkpoint, re-hash the chain, drop the checkpoints that
    # would expose it: intact as far as the files go; the auditor's last seq is not.
    earlier = _verify(ledger_path, signer)
    assert earlier.ok
    lines = [json.loads(line) for line in _lines(ledger_path)]
    lines[-1]["granted"], lines[-1]["denied"] = ["marketing"], []
    prev, out = GENESIS_HASH, b""
    for body in lines:
        body.pop("hash")
        body["prev_hash"] = prev
        line, prev = encode_line(body)
        out += line
    ledger_path.write_bytes(out)
    ledger_path.with_name("checkpoints.ndjson").write_bytes(b"")
    assert _verify(ledger_path, signer).ok  # what the files alone can say
    pinned = verify_ledger(
        ledger_path, public_key=signer.public_key, expect_covered=earlier.covered
    )
    assert not pinned.ok
    assert "checkpoint lines were deleted" in str(pinned.first_problem)
