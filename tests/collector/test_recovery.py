"""Start-up recovery: torn last lines cut and kept, recent messageIds remembered."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
from helpers import basic_auth, dead_pid, ndjson_lines, running_collector, serve

from journeykit.collector.recovery import closed_files, recent_message_ids, repair_torn_tails
from journeykit.collector.sink import host_tag


def _file(
    root: Path, pid: int, content: bytes, host: str | None = None, opened: int = 1795400000
) -> Path:
    path = root / "dt=2026-11-23" / "hr=10" / f"{host or host_tag()}-{pid}-{opened}-0001.ndjson"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_torn_tail_of_a_dead_writer_is_cut_and_kept(tmp_path: Path) -> None:
    root = tmp_path / "events"
    path = _file(root, dead_pid(), b'{"messageId":"a"}\n{"messageId":"b"}\n{"messageId":"c", "ev')
    (torn,) = repair_torn_tails(root, tmp_path / "torn")
    assert path.read_bytes() == b'{"messageId":"a"}\n{"messageId":"b"}\n'
    assert torn.bytes_cut == len(b'{"messageId":"c", "ev')
    assert torn.kept_in.read_bytes() == b'{"messageId":"c", "ev\n'
    assert repair_torn_tails(root, tmp_path / "torn") == []  # idempotent


def test_a_file_that_is_all_torn_becomes_empty(tmp_path: Path) -> None:
    path = _file(tmp_path, dead_pid(), b'{"no newline at all')
    repair_torn_tails(tmp_path, tmp_path / "torn")
    assert path.read_bytes() == b""


def test_files_of_live_writers_and_other_hosts_are_left_alone(tmp_path: Path) -> None:
    mine = _file(tmp_path, os.getpid(), b'{"partial', opened=int(time.time()))
    other = _file(tmp_path, dead_pid(), b'{"partial', host="elsewhere")
    assert repair_torn_tails(tmp_path, tmp_path / "torn") == []
    assert mine.read_bytes() == other.read_bytes() == b'{"partial'


def test_a_file_of_an_earlier_process_with_the_same_pid_is_repaired(tmp_path: Path) -> None:
    # A container's collector is PID 1 after every restart: the pid runs, the writer does not.
    before = int(time.time()) - 3600
    path = _file(tmp_path, os.getpid(), b'{"messageId":"a"}\n{"partial', opened=before)
    (torn,) = repair_torn_tails(tmp_path, tmp_path / "torn")
    assert (torn.path, path.read_bytes()) == (path, b'{"messageId":"a"}\n')
    assert closed_files(tmp_path) == [path]


def test_recent_ids_are_bounded_and_skip_broken_lines(tmp_path: Path) -> None:
    lines = [json.dumps({"messageId": f"m{i}"}) for i in range(10)]
    _file(tmp_path, 1, ("\n".join(lines) + "\nnot json\n").encode())
    assert recent_message_ids(tmp_path, 3600, 100) == [f"m{i}" for i in range(10)]
    assert recent_message_ids(tmp_path, 3600, 3) == ["m7", "m8", "m9"]
    assert recent_message_ids(tmp_path, 0, 100) == []


def test_a_resend_after_restart_is_a_duplicate(tmp_path: Path) -> None:
    body = {"batch": [{"type": "track", "userId": "u", "event": "E", "messageId": "once"}]}
    with running_collector(tmp_path / "data") as first:
        assert httpx.post(first.url + "/v1/batch", json=body, headers=first.auth()).is_success
    with running_collector(tmp_path / "data") as second:
        answer = httpx.post(second.url + "/v1/batch", json=body, headers=second.auth()).json()
        assert (answer["accepted"], answer["duplicates"]) == (0, 1)
        assert len(second.events) == 1


def test_collector_start_repairs_a_torn_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = _file(data / "events", dead_pid(), b'{"messageId":"kept"}\n{"messageId":"to')
    with running_collector(data) as running:
        assert [e["messageId"] for e in running.events] == ["kept"]
    assert path.read_bytes().endswith(b"\n")
    assert list((data / "torn").rglob("*.torn"))


def test_sigkill_under_load_loses_nothing_acknowledged_and_stores_nothing_twice(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    batches = [
        {
            "batch": [
                {"type": "track", "userId": f"u{b}", "event": "Load", "messageId": f"m-{b}-{i}"}
                for i in range(50)
            ]
        }
        for b in range(400)
    ]
    acknowledged: set[str] = set()
    lock = threading.Lock()
    next_batch = iter(range(len(batches)))

    def sender(url: str) -> None:
        with httpx.Client(timeout=5, headers=basic_auth("k")) as http:
            for b in next_batch:
                try:
                    response = http.post(url + "/v1/batch", json=batches[b])
                except httpx.TransportError:
                    return  # the server died under us
                if response.status_code == 200:
                    with lock:
                        acknowledged.update(e["messageId"] for e in batches[b]["batch"])

    with serve(data, "--write-key", "k") as (url, process):
        threads = [threading.Thread(target=sender, args=(url,)) for _ in range(4)]
        for t in threads:
            t.start()
        while len(acknowledged) < 2_000:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        for t in threads:
            t.join()
    stored = [e["messageId"] for e in ndjson_lines(data / "events")]
    assert acknowledged <= set(stored), "an acknowledged event is missing after SIGKILL"
    # A client resends everything it could not confirm; nothing is stored twice.
    with (
        serve(data, "--write-key", "k") as (url, _),
        httpx.Client(timeout=10, headers=basic_auth("k")) as http,
    ):
        for body in batches:
            assert http.post(url + "/v1/batch", json=body).status_code == 200
    stored = [e["messageId"] for e in ndjson_lines(data / "events")]
    assert len(stored) == len(set(stored)) == 400 * 50
