"""Reading the ledger: a subject's history, consent at a moment, exports and the HTML report."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from journeykit.consent.checkpoints import LedgerSigner
from journeykit.consent.errors import UnknownPurpose
from journeykit.consent.export import CSV_COLUMNS, export_ledger
from journeykit.consent.history import history, state_at
from journeykit.consent.ledger import ConsentLedger
from journeykit.consent.records import LedgerError
from journeykit.consent.report import render_report, summarize
from journeykit.consent.verify import verify_ledger


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2024, 5, day, hour, tzinfo=UTC)


def resolver(raw: str) -> Iterable[str]:
    """Stands in for Pseudonymizer.candidates: the pseudonym under an old and a new key."""
    return [f"hmac-sha256:k1:{raw}", f"hmac-sha256:k2:{raw}"]


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.ndjson"
    with ConsentLedger(path, signer=LedgerSigner.generate()) as ledger:
        ledger.append(
            "hmac-sha256:k1:alice",
            granted=["analytics", "marketing"],
            source="banner",
            method="accept_all",
            notice_version="v1",
            at=at(1),
        )
        ledger.append(
            "hmac-sha256:k1:bob",
            denied=["analytics"],
            source="banner",
            method="=HYPERLINK(1)",
            at=at(1, 13),
        )
        ledger.append("hmac-sha256:k2:alice", denied=["marketing"], source="gpc", at=at(2))
        ledger.append(
            "device-7",
            granted=["personalization"],
            source="api",
            at=at(3),
            linked_ids=["hmac-sha256:k2:alice"],
        )
        ledger.append("hmac-sha256:k2:alice", withdrawal=True, source="api", at=at(4))
        ledger.append(
            "hmac-sha256:k2:alice",
            kind="erasure_receipt",
            source="api",
            reference="DSR-42",
            at=at(5),
        )
    return path


def test_history_matches_every_pseudonym_and_linked_id(ledger_path: Path) -> None:
    seqs = [r.seq for r in history(ledger_path, "alice", resolver=resolver)]
    assert seqs == [1, 3, 4, 5, 6]
    assert [r.seq for r in history(ledger_path, "hmac-sha256:k1:bob")] == [2]
    assert list(history(ledger_path, "alice")) == []  # no resolver: exact match only


def test_state_at_each_moment(ledger_path: Path) -> None:
    def states(moment: datetime) -> dict[str, str]:
        state = state_at(ledger_path, "alice", moment, resolver=resolver)
        return {p.purpose.value: p.status for p in state.purposes}

    assert states(at(1, 0)) == {
        "necessary": "unset",
        "analytics": "unset",
        "personalization": "unset",
        "marketing": "unset",
    }
    assert states(at(1)) == {
        "necessary": "unset",
        "analytics": "granted",
        "personalization": "unset",
        "marketing": "granted",
    }
    assert states(at(3))["marketing"] == "denied"
    assert states(at(3))["personalization"] == "granted"
    after = state_at(ledger_path, "alice", at(6), resolver=resolver)
    assert {p.purpose.value: p.status for p in after.purposes} == {
        "necessary": "unset",
        "analytics": "denied",
        "personalization": "denied",
        "marketing": "denied",
    }
    withdrawn = next(p for p in after.purposes if p.purpose.value == "analytics")
    assert withdrawn.record is not None
    assert (withdrawn.record.seq, withdrawn.record.withdrawal) == (5, True)


def test_export_csv_with_filters_and_formula_escaping(ledger_path: Path) -> None:
    out = io.StringIO()
    count = export_ledger(ledger_path, out, "csv", start=at(1), end=at(3), purpose="analytics")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert count == 2
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["seq"] for r in rows] == ["1", "2"]
    assert rows[0]["granted"] == "analytics marketing"
    assert rows[1]["method"] == "'=HYPERLINK(1)"  # never run as a spreadsheet formula


def test_export_json_is_one_array_and_ndjson_one_record_per_line(ledger_path: Path) -> None:
    out = io.StringIO()
    assert export_ledger(ledger_path, out, "json", purpose="marketing") == 3
    records = json.loads(out.getvalue())
    assert [r["seq"] for r in records] == [1, 3, 5]
    assert records[0]["hash"] == json.loads(ledger_path.read_bytes().splitlines()[0])["hash"]
    out = io.StringIO()
    assert export_ledger(ledger_path, out, "ndjson", start=at(4)) == 2
    assert [json.loads(line)["kind"] for line in out.getvalue().splitlines()] == [
        "consent",
        "erasure_receipt",
    ]
    empty = io.StringIO()
    assert export_ledger(ledger_path, empty, "json", end=at(1, 0)) == 0
    assert json.loads(empty.getvalue()) == []


def test_export_refuses_bad_filters_before_writing(tmp_path: Path, ledger_path: Path) -> None:
    out = io.StringIO()
    with pytest.raises(UnknownPurpose, match="valid purposes are"):
        export_ledger(ledger_path, out, "csv", purpose="telemetry")
    with pytest.raises(LedgerError, match="no consent ledger"):
        export_ledger(tmp_path / "missing.ndjson", out, "json")
    assert out.getvalue() == ""


def test_report_is_self_contained_and_says_what_matters(ledger_path: Path) -> None:
    verification = verify_ledger(ledger_path)
    page = render_report(summarize(ledger_path), verification)
    for text in (
        "analytics",
        "marketing",
        "personalization",
        "banner",
        "gpc",
        "INTACT",
        "<svg",
        "Erasure receipts",
        "6 of 6",
    ):
        assert text in page
    assert "http" not in page
    assert "<script" not in page
    # analytics: 1 grant, 2 denials (bob, alice's withdrawal): 33.3%
    assert "<td>analytics</td><td>1</td><td>2</td><td>33.3%</td>" in page


def test_report_shows_a_failed_verification_escaped(ledger_path: Path) -> None:
    lines = ledger_path.read_bytes().splitlines(keepends=True)
    ledger_path.write_bytes(b"".join([lines[0], lines[2], *lines[3:]]))
    page = render_report(summarize(ledger_path), verify_ledger(ledger_path))
    assert "FAILED" in page
    assert "ledger.ndjson line 2" in page
    assert "<svg" in page


def test_at_one_time_a_denial_beats_a_grant_as_the_collector_decides(tmp_path: Path) -> None:
    path = tmp_path / "consent" / "ledger.ndjson"
    same = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    with ConsentLedger(path) as ledger:
        ledger.append("bob", denied=["marketing"], source="gpc", at=same)
        ledger.append("bob", granted=["marketing"], source="import", at=same)
    state = state_at(path, "bob", datetime(2024, 6, 1, tzinfo=UTC))
    assert state.status("marketing") == "denied"


def test_a_time_before_year_1000_sorts_before_the_others(tmp_path: Path) -> None:
    path = tmp_path / "consent" / "ledger.ndjson"
    with ConsentLedger(path) as ledger:
        ledger.append("bob", granted=["analytics"], at=datetime(2024, 5, 1, tzinfo=UTC))
    early = state_at(path, "bob", datetime(999, 1, 1, tzinfo=UTC))
    assert early.status("analytics") == "unset"
