"""Finding a subject's data, exporting it, erasing it: over a real collector's files."""

from __future__ import annotations

import gzip
import hashlib
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dsr_shop import Shop, traffic
from helpers import ndjson_lines

from journeykit.collector.dsr.erase import erase_events, remove_leftovers
from journeykit.collector.dsr.export import export_subject
from journeykit.collector.dsr.requests import (
    Law,
    RequestKind,
    RequestLog,
    RequestStatus,
    deadline_for,
)
from journeykit.collector.dsr.subject import resolve
from journeykit.collector.suppression import InvalidSubject, check_subject

ALICE_IDS = {"m-1", "m-2", "m-3", "m-4", "m-5", "m-6"}


def ids_of(records: list[dict[str, object]]) -> set[str]:
    return {str(r.get("messageId")) for r in records}


def test_resolve_follows_alias_and_anonymous_ids(shop: Shop) -> None:
    subject = resolve(shop.data_dir, "alice", shop.pseudonymizer)
    assert {"alice", "anon-alice", "alice-2"} <= subject.ids
    assert "bob" not in subject.ids
    assert "anon-carol" not in subject.ids


def test_resolve_by_raw_email_finds_the_pseudonymized_identify(shop: Shop) -> None:
    # The collector stored only the pseudonym of the email; the officer types the raw one.
    stored = next(e for e in shop.collector.events if e["messageId"] == "m-3")
    assert "Alice@Example.com" not in json.dumps(stored)
    subject = resolve(shop.data_dir, "alice@example.com", shop.pseudonymizer)
    assert {"alice", "anon-alice", "alice-2"} <= subject.ids


def test_an_id_that_is_a_prefix_of_another_does_not_match(shop: Shop) -> None:
    # "alicex" appears in Bob's event as a value; "alice" must not match it, nor Bob's event.
    subject = resolve(shop.data_dir, "alice", shop.pseudonymizer)
    assert "m-7" not in ids_of([e for e in shop.collector.events if subject.owns(e)])


def test_export_holds_exactly_the_subjects_data(shop: Shop, tmp_path: Path) -> None:
    subject = resolve(shop.data_dir, "alice", shop.pseudonymizer)
    out = tmp_path / "alice.zip"
    manifest = export_subject(shop.data_dir, subject, out, profile={"orders": 1})
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        events = json.loads(archive.read("events.json"))
        rejected = json.loads(archive.read("rejected.json"))
        stored_manifest = json.loads(archive.read("manifest.json"))
        for name, entry in stored_manifest["files"].items():
            assert hashlib.sha256(archive.read(name)).hexdigest() == entry["sha256"]
    assert names == {
        "events.json",
        "rejected.json",
        "profile.json",
        "decisions.json",
        "consent_history.json",
        "manifest.json",
    }
    assert ids_of(events) == ALICE_IDS
    assert [r["messageId"] for r in rejected] == ["m-bad"]
    assert manifest.count("events.json") == 6
    assert stored_manifest["time_range"]["first"] <= stored_manifest["time_range"]["last"]
    assert not list(tmp_path.glob(".*partial"))


def test_export_of_an_unknown_subject_is_empty_not_an_error(shop: Shop, tmp_path: Path) -> None:
    subject = resolve(shop.data_dir, "nobody", shop.pseudonymizer)
    manifest = export_subject(shop.data_dir, subject, tmp_path / "n.zip")
    assert manifest.count("events.json") == 0


def test_erase_removes_the_subject_and_keeps_everyone_else(shop: Shop) -> None:
    before = shop.collector.events
    subject = resolve(shop.data_dir, "alice", shop.pseudonymizer)
    result = erase_events(shop.data_dir, subject)
    after = shop.collector.events
    assert result.events_removed == 6
    assert result.rejected_removed == 1
    assert ids_of(after) == ids_of(before) - ALICE_IDS
    # Every other line is byte-for-byte what it was.
    assert [e for e in before if e["messageId"] not in ALICE_IDS] == after
    assert shop.collector.rejected == []
    # A second erasure finds nothing and rewrites nothing.
    again = erase_events(shop.data_dir, subject)
    assert (again.events_removed, again.files_rewritten) == (0, [])


def test_erase_rewrites_gzipped_files(shop: Shop) -> None:
    for path in (shop.data_dir / "events").rglob("*.ndjson"):
        gz = path.with_name(path.name + ".gz")
        gz.write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    subject = resolve(shop.data_dir, "alice", shop.pseudonymizer)
    assert erase_events(shop.data_dir, subject).events_removed == 6
    left = [
        json.loads(line)
        for gz in (shop.data_dir / "events").rglob("*.ndjson.gz")
        for line in gzip.decompress(gz.read_bytes()).splitlines()
    ]
    assert ids_of(left) == {e["messageId"] for e in traffic()} - ALICE_IDS


def test_leftover_temporary_files_are_removed_and_never_read(shop: Shop) -> None:
    (path,) = (shop.data_dir / "events").rglob("*.ndjson")
    leftover = path.with_name(f".{path.name}.erasing")
    leftover.write_bytes(b'{"messageId": "half-written"')
    assert ndjson_lines(shop.data_dir / "events")  # the real file is intact
    assert remove_leftovers(shop.data_dir) == [leftover]
    assert not leftover.exists()


@pytest.mark.parametrize("bad", ["", "   ", "a\nb", "x" * 600, "tab\there", "nul\x00"])
def test_bad_subjects_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSubject):
        check_subject(bad)


def test_request_log_folds_status_and_sets_deadlines(tmp_path: Path) -> None:
    log = RequestLog(tmp_path)
    received = datetime(2026, 1, 31, 12, tzinfo=UTC)
    gdpr = log.open(RequestKind.ACCESS, "hmac-sha256:k1:ab", reference="T-1", now=received)
    ccpa = log.open(RequestKind.ERASURE, "hmac-sha256:k1:cd", law=Law.CCPA, now=received)
    log.close(gdpr, RequestStatus.COMPLETED, {"events": 3}, now=received)
    listed = {r.id: r for r in log.requests()}
    assert listed[gdpr.id].status is RequestStatus.COMPLETED
    assert listed[gdpr.id].detail == {"events": 3}
    assert listed[ccpa.id].status is RequestStatus.RECEIVED
    assert gdpr.deadline == "2026-02-28T12:00:00Z"  # one calendar month, clamped to February
    assert ccpa.deadline == "2026-03-17T12:00:00Z"  # 45 days
    assert listed[ccpa.id].overdue(datetime(2026, 3, 18, tzinfo=UTC))
    assert not listed[gdpr.id].overdue(datetime(2027, 1, 1, tzinfo=UTC))
    # A torn last line (a crash mid-append) leaves the earlier requests readable.
    with log.path.open("ab") as handle:
        handle.write(b'{"id": "dsr-torn", "kin')
    assert len(log.requests()) == 2
    assert deadline_for(Law.GDPR, datetime(2026, 12, 15, tzinfo=UTC)).month == 1
