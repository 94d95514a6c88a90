"""Workers sharing their dedup windows through journals under the data dir."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from journeykit.collector import dedup_peers
from journeykit.collector.app import CollectorCore
from journeykit.collector.dedup import Deduplicator
from journeykit.collector.dedup_peers import PeerJournal, PeerReader
from journeykit.collector.settings import CollectorSettings


def worker(root: Path, prefix: str) -> tuple[PeerJournal, PeerReader, Deduplicator]:
    journal = PeerJournal(root)
    journal.prefix = prefix  # two "workers" in one test process: their own names
    window = Deduplicator(3600, 10_000)
    return journal, PeerReader(root, prefix, window, 3600), window


def test_ids_one_worker_stored_are_duplicates_for_the_other(tmp_path: Path) -> None:
    a_journal, a_reader, a_window = worker(tmp_path, "host-1-1-")
    b_journal, b_reader, b_window = worker(tmp_path, "host-2-1-")
    a_journal.append(["m1", "m2"])
    assert a_reader.read_once() == 0  # its own journal is not read back
    assert b_reader.read_once() == 2
    assert b_window.reserve(["m1", "m2", "m3"]) == [False, False, True]
    b_journal.append(["m3"])
    a_reader.read_once()
    assert a_window.reserve(["m3"]) == [False]
    assert b_reader.read_once() == 0  # nothing new: each line is read once


def test_a_line_being_written_is_read_once_whole(tmp_path: Path) -> None:
    a_journal, _, _ = worker(tmp_path, "host-1-1-")
    _, b_reader, b_window = worker(tmp_path, "host-2-1-")
    a_journal.append(["m1"])
    [path] = tmp_path.glob("*.ids")
    with path.open("ab") as handle:
        handle.write(b'["m2","m')  # the rest not written yet
    assert b_reader.read_once() == 1
    with path.open("ab") as handle:
        handle.write(b'3"]\n')
    assert b_reader.read_once() == 2
    assert b_window.reserve(["m1", "m2", "m3"]) == [False, False, False]


def test_a_torn_line_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    _, b_reader, b_window = worker(tmp_path, "host-2-1-")
    (tmp_path / "host-1-1-0001.ids").write_bytes(b'["m1"]\n["m2\n["m3"]\n')
    assert b_reader.read_once() == 2
    assert b_window.reserve(["m1", "m2", "m3"]) == [False, True, False]


def test_what_journals_held_at_start_is_left_to_the_ndjson_rebuild(tmp_path: Path) -> None:
    a_journal, _, _ = worker(tmp_path, "host-1-1-")
    a_journal.append(["old"])
    _, late_reader, late_window = worker(tmp_path, "host-3-1-")
    a_journal.append(["new"])
    assert late_reader.read_once() == 1
    assert late_window.reserve(["old", "new"]) == [True, False]


def test_journals_rotate_and_old_ones_are_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dedup_peers, "ROTATE_SECONDS", 0.0)
    a_journal, _, _ = worker(tmp_path, "host-1-1-")
    a_journal.append(["m1"])
    a_journal.append(["m2"])
    files = sorted(tmp_path.glob("*.ids"))
    assert [p.name for p in files] == ["host-1-1-0001.ids", "host-1-1-0002.ids"]
    _, b_reader, _ = worker(tmp_path, "host-2-1-")
    old = time.time() - 3600 - 10
    os.utime(files[0], (old, old))
    b_reader._last_sweep = 0.0  # the next read sweeps
    b_reader.read_once()
    assert [p.name for p in tmp_path.glob("*.ids")] == ["host-1-1-0002.ids"]


def test_a_journal_that_cannot_be_written_costs_only_the_sharing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "dedup"
    journal = PeerJournal(root)
    root.rmdir()
    root.write_text("a file where the directory should be")
    journal.append(["m1"])  # no exception into the request: the events are stored
    journal.append(["m2"])
    assert journal.errors == 2
    assert len([r for r in caplog.records if "cannot share" in r.getMessage()]) == 1


def test_a_journal_rotated_away_from_is_read_once_then_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dedup_peers, "ROTATE_SECONDS", 0.0)
    a_journal, _, _ = worker(tmp_path, "host-1-1-")
    _, b_reader, b_window = worker(tmp_path, "host-2-1-")
    a_journal._seq = 9_998  # the 9,999th and 10,000th journals: numbers, not text, order them
    a_journal.append(["m1"])
    a_journal.append(["m2"])
    assert b_reader.read_once() == 2
    assert b_reader._done == {"host-1-1-9999.ids"}  # the newest may still grow
    monkeypatch.setattr(dedup_peers, "ROTATE_SECONDS", 3600.0)
    a_journal.append(["m3"])  # into the newest, 10000
    assert b_reader.read_once() == 1
    assert b_window.reserve(["m1", "m2", "m3"]) == [False, False, False]


@pytest.mark.parametrize(("peers", "lookup_sets"), [(False, 2), (True, 0)])
def test_workers_sharing_their_windows_probe_the_generations(
    tmp_path: Path, peers: bool, lookup_sets: int
) -> None:
    # Every worker commits every worker's ids: the lookup sets' dearer commits would be paid
    # N times over (collector/app.py, _deduplicator).
    settings = CollectorSettings(
        data_dir=tmp_path,
        write_keys=(SecretStr("k"),),
        pseudonym_key=SecretStr("test-pseudonym-key-0123456789abcdef"),
        dedup_peers=peers,
        dedup_max_entries=100_000,  # small enough for lookup sets without peers
        decisions=False,
    )
    core = CollectorCore(settings)
    try:
        assert isinstance(core.dedup, Deduplicator)
        assert core.dedup.lookup_sets == lookup_sets
    finally:
        core.close()
