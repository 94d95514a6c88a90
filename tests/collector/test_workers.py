"""``serve --workers N``: several processes serve, each writing its own files."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import httpx
from helpers import SERVER_ENV, basic_auth, serve

ADMIN_KEY = "admin-key-0123456789abcdef"
# <host>-<pid>-<start>-<seq>.ndjson, see collector/sink.py
_FILE_PID = re.compile(r"-(\d+)-\d+-\d+\.ndjson$")


def test_two_workers_serve_and_never_share_a_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {**SERVER_ENV, "JOURNEYKIT_WRITE_KEYS": "worker-key", "JOURNEYKIT_ADMIN_KEY": ADMIN_KEY}
    answered_by: dict[str, int] = {}  # messageId -> pid of the worker that stored it
    with serve(data_dir, "--workers", "2", env=env) as (url, process):
        deadline = time.monotonic() + 60
        n = 0
        while len(set(answered_by.values())) < 2 or n < 20:
            assert time.monotonic() < deadline, f"one worker answered all: {answered_by}"
            # A fresh connection each time, for the kernel to hand to either worker; both
            # requests go over it, so the pid names the worker that stored the event.
            with httpx.Client(base_url=url) as client:
                admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
                pid = client.get("/admin/v1/status", headers=admin).json()["pid"]
                event = {"type": "track", "userId": "u", "event": "E", "messageId": f"m-{n}"}
                stored = client.post(
                    "/v1/batch", json={"batch": [event]}, headers=basic_auth("worker-key")
                )
                assert stored.json()["accepted"] == 1
            answered_by[f"m-{n}"] = pid
            n += 1
        assert process.pid not in answered_by.values()  # the supervisor serves nothing itself
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    worker_pids = set(answered_by.values())
    assert "Traceback" not in output
    assert "worker-key" not in output
    assert ADMIN_KEY not in output
    files = sorted((data_dir / "events").rglob("*.ndjson"))
    pids_in_names = set()
    for path in files:
        match = _FILE_PID.search(path.name)
        assert match, path.name
        file_pid = int(match.group(1))
        pids_in_names.add(file_pid)
        for line in path.read_text().splitlines():
            message_id = json.loads(line)["messageId"]
            assert answered_by.pop(message_id) == file_pid  # stored by the worker that answered
    assert answered_by == {}  # every event landed, exactly once
    assert pids_in_names == worker_pids
    assert len(worker_pids) == 2
