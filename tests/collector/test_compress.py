"""``gzip_closed``: closed NDJSON files become complete ``.ndjson.gz`` files, crash or not."""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
from helpers import dead_pid, running_collector

from journeykit.collector.compress import Compressor, finish_interrupted, gzip_file
from journeykit.collector.sink import host_tag

LINES = b"".join(b'{"messageId":"m-%d","n":%d}\n' % (n, n) for n in range(200))


def _file(root: Path, pid: int, content: bytes, seq: int = 1) -> Path:
    hour = time.strftime("dt=%Y-%m-%d/hr=%H", time.gmtime())
    path = root / hour / f"{host_tag()}-{pid}-1795400000-{seq:04d}.ndjson"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _records(root: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(root.rglob("*.ndjson*")):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        out += [json.loads(line) for line in data.splitlines()]
    return out


def _wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_gzip_file_replaces_the_original_with_a_complete_gz(tmp_path: Path) -> None:
    path = _file(tmp_path, 1, LINES)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    done = gzip_file(path)
    assert done == path.with_name(path.name + ".gz")
    assert not path.exists()
    assert gzip.decompress(done.read_bytes()) == LINES
    assert done.stat().st_mtime == 1_700_000_000  # the dedup window reads the original's time
    assert [p.name for p in done.parent.iterdir()] == [done.name]  # no temporary file left
    assert gzip_file(path) is None  # already done, e.g. by another process


def test_a_crash_before_the_rename_leaves_the_original(tmp_path: Path) -> None:
    path = _file(tmp_path, 1, LINES)
    temp = path.with_name(f"{path.name}.gz.{dead_pid()}.tmp")
    temp.write_bytes(gzip.compress(LINES)[:50])  # half written
    live = path.with_name(f"{path.name}.gz.{os.getpid()}.tmp")
    live.write_bytes(b"")  # a running process's work in progress
    other = _file(tmp_path, 2, LINES)
    earlier = other.with_name(f"{other.name}.gz.{os.getpid()}.tmp")
    earlier.write_bytes(b"")  # an earlier process's, whose pid this one has now
    os.utime(earlier, (time.time() - 3600, time.time() - 3600))
    assert finish_interrupted(tmp_path) == 2
    assert not temp.exists()
    assert not earlier.exists()
    assert live.exists()
    assert path.read_bytes() == LINES


def test_a_crash_between_rename_and_unlink_keeps_the_gz(tmp_path: Path) -> None:
    path = _file(tmp_path, 1, LINES)
    done = path.with_name(path.name + ".gz")
    done.write_bytes(gzip.compress(LINES))
    assert finish_interrupted(tmp_path) == 1
    assert not path.exists()
    assert _records(tmp_path) == [json.loads(line) for line in LINES.splitlines()]
    assert finish_interrupted(tmp_path) == 0


def test_a_failed_compression_leaves_the_original(tmp_path: Path) -> None:
    path = _file(tmp_path, 1, LINES)
    path.with_name(path.name + ".gz").mkdir()  # the rename onto it fails
    compressor = Compressor()
    compressor.submit(path)
    _wait_for(lambda: compressor.failed == 1, "the failure was not counted")
    compressor.close()
    assert compressor.compressed == 0
    assert path.read_bytes() == LINES
    assert not list(path.parent.glob("*.tmp"))


def test_rotated_files_are_compressed_while_serving(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    accepted = 0
    with running_collector(data_dir, rotate_bytes=1024, gzip_closed=True) as c:
        for n in range(6):
            batch = [
                {"type": "track", "userId": "u", "event": "E", "messageId": f"m-{n}-{i}"}
                for i in range(10)
            ]
            answer = httpx.post(c.url + "/v1/batch", json={"batch": batch}, headers=c.auth())
            accepted += answer.json()["accepted"]
        events = data_dir / "events"
        _wait_for(lambda: len(list(events.rglob("*.ndjson.gz"))) >= 5, "rotated files not gzipped")
        assert not list(events.rglob("*.tmp"))
        # The dedup memory of this process already knows them; a resend is a duplicate.
        again = httpx.post(c.url + "/v1/batch", json={"batch": batch}, headers=c.auth())
        assert again.json()["duplicates"] == 10
    records = _records(data_dir / "events")
    assert len(records) == accepted == 60
    assert len({r["messageId"] for r in records}) == 60


def test_start_finishes_compressions_and_repairs_then_gzips_dead_writers(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    events = data_dir / "events"
    dead = dead_pid()
    torn = _file(events, dead, LINES + b'{"messageId":"torn', seq=1)
    halfway = _file(events, dead, b'{"messageId":"x-1"}\n', seq=2)
    halfway.with_name(halfway.name + ".gz").write_bytes(gzip.compress(b'{"messageId":"x-1"}\n'))
    halfway.with_name(f"{halfway.name}.gz.{dead}.tmp").write_bytes(b"junk")
    with running_collector(data_dir, gzip_closed=True) as c:
        _wait_for(lambda: not list(events.rglob("*.ndjson")), "closed files not gzipped")
        # The dedup rebuild read the compressed files.
        resend = [{"type": "track", "userId": "u", "event": "E", "messageId": "x-1"}]
        answer = httpx.post(c.url + "/v1/batch", json={"batch": resend}, headers=c.auth())
        assert answer.json()["duplicates"] == 1
    files = sorted(p.name for p in events.rglob("*") if p.is_file())
    assert files == [torn.name + ".gz", halfway.name + ".gz"]
    assert [r["messageId"] for r in _records(events)] == [
        *(f"m-{n}" for n in range(200)),
        "x-1",
    ]
    assert (data_dir / "torn").is_dir()  # the torn line was cut before compressing


def test_the_dedup_window_is_read_before_closed_files_are_compressed(tmp_path: Path) -> None:
    # What stops leave: many closed plain files. The compressor started on them while the
    # dedup rebuild listed and read them: a file gone between the two failed the start, one
    # gone before it was read left its ids out (their resends stored twice).
    data_dir = tmp_path / "data"
    events = data_dir / "events"
    dead = dead_pid()
    for seq in range(300):
        _file(events, dead, b'{"messageId":"old-%d"}\n' % seq, seq=seq)
    with running_collector(data_dir, gzip_closed=True) as c:
        resend = [
            {"type": "track", "userId": "u", "event": "E", "messageId": f"old-{seq}"}
            for seq in range(300)
        ]
        answer = httpx.post(c.url + "/v1/batch", json={"batch": resend}, headers=c.auth())
        assert (answer.json()["accepted"], answer.json()["duplicates"]) == (0, 300)
        _wait_for(lambda: not list(events.rglob("*.ndjson")), "closed files not gzipped")


def test_the_dedup_rebuild_reads_a_file_in_either_form_once(tmp_path: Path) -> None:
    from journeykit.collector.recovery import recent_message_ids

    # Another worker's compressor may take a file between the listing and the read, and a
    # crash between its rename and unlink leaves both forms: each file is read once, in the
    # form it has when its turn comes.
    events = tmp_path / "events"
    plain = _file(events, dead_pid(), b'{"messageId":"a"}\n{"messageId":"b"}\n')
    plain.with_name(plain.name + ".gz").write_bytes(gzip.compress(plain.read_bytes()))
    both = recent_message_ids(events, 3600, 1000)
    plain.unlink()
    assert both == ["a", "b"]  # one file, read once, though both forms were there
    assert recent_message_ids(events, 3600, 1000) == ["a", "b"]
