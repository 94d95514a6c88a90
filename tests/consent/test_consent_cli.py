"""``journeykit consent ...`` end to end, through the real ``journeykit`` entry point."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from journeykit.collector._cli import main
from journeykit.consent.ledger import ConsentLedger


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir with five records signed by the embedded demo key."""
    for name in (
        "JOURNEYKIT_LEDGER_SIGNING_KEY_FILE",
        "JOURNEYKIT_PSEUDONYM_KEY",
        "JOURNEYKIT_PSEUDONYM_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    with ConsentLedger.open(tmp_path, environ={}, checkpoint_every=2) as ledger:
        for day in range(1, 5):
            ledger.append(
                "hmac-sha256:k1:alice" if day % 2 else "hmac-sha256:k1:bob",
                granted=["analytics"] if day < 3 else [],
                denied=["analytics"] if day >= 3 else ["marketing"],
                source="banner",
                notice_version="2024-03",
                at=datetime(2024, 5, day, 12, tzinfo=UTC),
            )
        ledger.append(
            "hmac-sha256:k1:alice",
            withdrawal=True,
            source="api",
            at=datetime(2024, 5, 5, tzinfo=UTC),
        )
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["consent", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_verify_intact(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "verify", "--data-dir", str(data_dir))
    assert status == 0
    assert "OK:" in out
    assert "5 records" in out
    assert "Covered by a signed checkpoint: 5 of 5" in out
    assert "DEMO key" in out


def test_verify_names_the_altered_line(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = data_dir / "consent" / "ledger.ndjson"
    ledger.write_bytes(ledger.read_bytes().replace(b'"granted":["analytics"]', b'"granted":[]', 1))
    status, out, err = run(capsys, "verify", "--data-dir", str(data_dir))
    assert status == 1
    assert "FAILED" in out
    assert "ledger.ndjson line 1: content does not match its hash" in out
    assert "Traceback" not in err


def test_public_key_for_the_auditor(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "public-key", "--data-dir", str(data_dir))
    assert status == 0
    assert out.startswith("-----BEGIN PUBLIC KEY-----")
    assert "DEMO" in err
    auditor = tmp_path / "auditor.pem"
    auditor.write_text(out)
    status, out, _ = run(
        capsys, "verify", "--data-dir", str(data_dir), "--public-key", str(auditor)
    )
    assert status == 0
    assert f"key from {auditor}" in out
    # The demo key replaced behind the auditor's back: the auditor's copy no longer verifies.
    (data_dir / "consent" / "ledger-signing-key.DEMO.pem").unlink()
    with ConsentLedger.open(data_dir, environ={}) as ledger:
        ledger.append("x", granted=["analytics"])
    status, out, _ = run(
        capsys, "verify", "--data-dir", str(data_dir), "--public-key", str(auditor)
    )
    assert status == 1
    assert "checkpoints.ndjson line 4" in out


def test_history_and_state(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "history", "hmac-sha256:k1:alice", "--data-dir", str(data_dir))
    assert status == 0
    assert "3 record(s)" in out
    assert "WITHDREW: analytics, personalization, marketing" in out
    status, out, _ = run(
        capsys,
        "state",
        "hmac-sha256:k1:alice",
        "--at",
        "2024-05-02",
        "--data-dir",
        str(data_dir),
        "--json",
    )
    assert status == 0
    state = json.loads(out)
    assert state["purposes"]["analytics"] == {
        "status": "granted",
        "seq": 1,
        "record_at": "2024-05-01T12:00:00.000000Z",
    }
    assert state["purposes"]["marketing"]["status"] == "denied"
    status, out, _ = run(
        capsys,
        "state",
        "hmac-sha256:k1:alice",
        "--at",
        "2024-05-06T00:00:00+02:00",
        "--data-dir",
        str(data_dir),
    )
    assert "analytics        denied" in out


def test_export_and_report(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(
        capsys, "export", "--format", "csv", "--purpose", "marketing", "--data-dir", str(data_dir)
    )
    assert status == 0
    assert [r["seq"] for r in csv.DictReader(io.StringIO(out))] == ["1", "2", "5"]
    target = tmp_path / "out.json"
    status, _, err = run(
        capsys,
        "export",
        "--format",
        "json",
        "--from",
        "2024-05-03",
        "--out",
        str(target),
        "--data-dir",
        str(data_dir),
    )
    assert status == 0
    assert "exported 3 record(s)" in err
    assert [r["seq"] for r in json.loads(target.read_text())] == [3, 4, 5]
    page = tmp_path / "report.html"
    status, out, _ = run(capsys, "report", "--out", str(page), "--data-dir", str(data_dir))
    assert status == 0
    assert "ledger intact" in out
    html = page.read_text()
    assert "<svg" in html
    assert "INTACT" in html
    assert "http" not in html


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["state", "x", "--at", "yesterday"], "--at: not an ISO 8601 time: 'yesterday'"),
        (["export", "--purpose", "telemetry"], "valid purposes are: necessary, analytics"),
        (["export", "--to", "5/1/2024"], "--to: not an ISO 8601 time"),
        (["state", "x", "--at", "9999-12-31T23:00:00-02:00"], "outside years 1-9999 in UTC"),
        (["export", "--from", "0001-01-01T00:00:00+01:00"], "outside years 1-9999 in UTC"),
    ],
)
def test_bad_input_is_one_clear_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, *argv, "--data-dir", str(data_dir))
    assert status == 1
    assert message in err
    assert "Traceback" not in err
    assert out == ""


@pytest.mark.parametrize(
    "action",
    ["verify", "history x", "state x --at 2024-01-01", "export", "report", "public-key", "repair"],
)
def test_missing_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str) -> None:
    status, out, err = run(capsys, *action.split(), "--data-dir", str(tmp_path / "empty"))
    assert status == 1
    assert ("no consent ledger at" in err) or ("no signing key" in err)
    assert out == ""


@pytest.mark.parametrize("action", ["history x", "export --format csv", "report"])
def test_a_line_that_is_no_record_is_one_clear_line(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    with (data_dir / "consent" / "ledger.ndjson").open("ab") as handle:
        handle.write(b'["not", "a", "record"]\n')  # JSON, and damaged: `verify` says so
    argv = action.split() + (["--out", str(tmp_path / "r.html")] if action == "report" else [])
    status, _, err = run(capsys, *argv, "--data-dir", str(data_dir))
    assert status == 1
    assert "is not a JSON record" in err
    assert "Traceback" not in err


def test_repair_then_verify(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = data_dir / "consent" / "ledger.ndjson"
    with ledger.open("ab") as handle:
        handle.write(b'{"at":"2024')
    status, out, _ = run(capsys, "verify", "--data-dir", str(data_dir))
    assert status == 1
    assert "line 6: incomplete last line" in out
    status, _, err = run(capsys, "history", "x", "--data-dir", str(data_dir))
    assert status == 1
    assert "line 6 is incomplete" in err
    status, out, _ = run(capsys, "repair", "--data-dir", str(data_dir))
    assert status == 0
    assert "moved incomplete line 6 (11 bytes)" in out
    assert run(capsys, "verify", "--data-dir", str(data_dir))[0] == 0


def test_as_a_subprocess(data_dir: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "journeykit.collector",
            "consent",
            "verify",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "intact" in done.stdout


def test_raw_email_is_resolved_with_the_pseudonymization_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from journeykit.consent.pseudonymize import FieldKind, Pseudonymizer

    monkeypatch.setenv("JOURNEYKIT_PSEUDONYM_KEY", "x7Kq2vLr9TzW4mNs8pYc3bHd6fJg1aUe5iOo0wQt")
    monkeypatch.delenv("JOURNEYKIT_LEDGER_SIGNING_KEY_FILE", raising=False)
    pseudonym = Pseudonymizer.from_env().pseudonymize("carol@example.com", FieldKind.EMAIL)
    with ConsentLedger.open(tmp_path, environ={}) as ledger:
        ledger.append(pseudonym, granted=["marketing"], source="banner")
        ledger.append("someone-else", granted=["marketing"], source="banner")
    status, out, _ = run(capsys, "history", " Carol@Example.com", "--data-dir", str(tmp_path))
    assert status == 0
    assert "1 record(s)" in out
    assert "pseudonyms under keys ('k1',)" in out


def test_a_record_of_the_wrong_shape_is_one_clear_line_and_the_report_still_renders(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = b'{"seq":99,"kind":"consent","at":"2024-05-21T00:00:00.000000Z","granted":[{"x":1}],'
    with (data_dir / "consent" / "ledger.ndjson").open("ab") as handle:
        handle.write(bad + b'"denied":7}\n')
    status, _, err = run(capsys, "export", "--purpose", "marketing", "--data-dir", str(data_dir))
    assert status == 1
    assert "malformed record" in err
    assert "Traceback" not in err
    page = tmp_path / "report.html"
    status, out, err = run(capsys, "report", "--out", str(page), "--data-dir", str(data_dir))
    assert (status, "Traceback" in err) == (0, False)
    assert "FAILED" in out
    assert page.read_text().startswith("<!DOCTYPE html>")
