"""``serve --workers N``: several processes serve, each writing its own files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from helpers import SERVER_ENV, basic_auth, dead_pid, serve

from journeykit.collector.sink import host_tag

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


def test_a_resend_reaching_another_worker_is_a_duplicate(tmp_path: Path) -> None:
    # The kernel hands each new connection to any worker: a resend after a timeout usually
    # reaches another one than the first copy. With a dedup window per worker, it was stored
    # again (50 of 60 in a review's run with four workers).
    data_dir = tmp_path / "data"
    env = {**SERVER_ENV, "JOURNEYKIT_WRITE_KEYS": "worker-key", "JOURNEYKIT_ADMIN_KEY": ADMIN_KEY}
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    sent: dict[str, int] = {}  # messageId -> the pid that stored it
    crossed = 0  # resends answered by another worker than the first copy
    with serve(data_dir, "--workers", "2", env=env) as (url, process):
        deadline = time.monotonic() + 60
        n = 0
        while crossed < 5:
            assert time.monotonic() < deadline, f"resends never crossed workers: {sent}"
            event = {"type": "track", "userId": "u", "event": "E", "messageId": f"m-{n}"}
            answers = []
            for _ in range(2):  # the first copy, then the resend on a fresh connection
                with httpx.Client(base_url=url) as client:
                    pid = client.get("/admin/v1/status", headers=admin).json()["pid"]
                    body = {"batch": [event]}
                    answer = client.post("/v1/batch", json=body, headers=basic_auth("worker-key"))
                    answers.append((pid, answer.json()))
                time.sleep(0.2)  # a client's resend comes later than this
            (first_pid, first), (second_pid, second) = answers
            assert (first["accepted"], second["accepted"], second["duplicates"]) == (1, 0, 1)
            crossed += first_pid != second_pid
            sent[f"m-{n}"] = first_pid
            n += 1
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert "Traceback" not in output
    stored = [
        json.loads(line)["messageId"]
        for path in (data_dir / "events").rglob("*.ndjson")
        for line in path.read_text().splitlines()
    ]
    assert sorted(stored) == sorted(sent)  # each once


def test_every_scrape_counts_every_worker(tmp_path: Path) -> None:
    # A scrape reaches whichever worker the kernel picks: each answered with its own counts,
    # so successive scrapes went backwards; the torn line the command cut at start was in no
    # worker's counts at all.
    data_dir = tmp_path / "data"
    hour = time.strftime("dt=%Y-%m-%d/hr=%H", time.gmtime())
    torn = data_dir / "events" / hour / f"{host_tag()}-{dead_pid()}-1795400000-0001.ndjson"
    torn.parent.mkdir(parents=True)
    torn.write_bytes(b'{"messageId":"whole"}\n{"messageId":"cut')
    # An earlier command's metrics (its process gone) are removed; a running one's are kept.
    earlier = data_dir / "metrics" / f"{host_tag()}-{dead_pid()}-1795400000"
    earlier.mkdir(parents=True)
    (earlier / "counter_1.db").write_bytes(b"an earlier run's")
    running = data_dir / "metrics" / f"{host_tag()}-{os.getpid()}-{int(time.time())}"
    running.mkdir()
    env = {**SERVER_ENV, "JOURNEYKIT_WRITE_KEYS": "worker-key", "JOURNEYKIT_ADMIN_KEY": ADMIN_KEY}
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    pids = set()
    with serve(data_dir, "--workers", "2", env=env) as (url, process):
        deadline = time.monotonic() + 60
        n = 0
        while len(pids) < 2 or n < 10:
            assert time.monotonic() < deadline, f"one worker answered all: {pids}"
            with httpx.Client(base_url=url) as client:
                pids.add(client.get("/admin/v1/status", headers=admin).json()["pid"])
                event = {"type": "track", "userId": "u", "event": "E", "messageId": f"m-{n}"}
                body = {"batch": [event]}
                assert client.post("/v1/batch", json=body, headers=basic_auth("worker-key"))
            n += 1
        scraped = []
        for _ in range(8):  # fresh connections: both workers answer some of them
            text = httpx.get(url + "/metrics").text
            accepted = re.search(
                r'^journeykit_events_total\{outcome="accepted",reason="stored"\} (\S+)$',
                text,
                re.MULTILINE,
            )
            assert accepted, text
            scraped.append(float(accepted.group(1)))
            assert "journeykit_torn_lines_repaired_total 1.0" in text
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert "Traceback" not in output
    assert scraped == [float(n)] * 8
    assert not earlier.exists()
    assert running.exists()


def test_decision_gauges_are_every_workers_current_ones(tmp_path: Path) -> None:
    # A worker wrote its gauges only when it handled a request or a scrape: an idle one read
    # "store unavailable" (0) and old counts, and a killed one's 0 stayed in the minimum.
    env = {**SERVER_ENV, "JOURNEYKIT_WRITE_KEYS": "worker-key", "JOURNEYKIT_ADMIN_KEY": ADMIN_KEY}
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    def gauge(text: str, name: str) -> float:
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        assert found, (name, text)
        return float(found.group(1))

    available = "journeykit_decisions_store_available"
    queued = 'journeykit_decisions{name="events_queued"}'
    with serve(tmp_path / "data", "--workers", "2", env=env) as (url, process):
        assert gauge(httpx.get(url + "/metrics").text, available) == 1.0
        pids = set()
        for n in range(40):  # fresh connections: both workers store some
            with httpx.Client(base_url=url) as client:
                pids.add(client.get("/admin/v1/status", headers=admin).json()["pid"])
                event = {"type": "track", "userId": f"u{n}", "event": "E", "messageId": f"m-{n}"}
                body = {"batch": [event]}
                assert client.post("/v1/batch", json=body, headers=basic_auth("worker-key"))
        assert len(pids) == 2
        time.sleep(1.5)  # each worker copies its counts every second, busy or not
        texts = [httpx.get(url + "/metrics").text for _ in range(4)]
        assert [gauge(t, queued) for t in texts] == [40.0] * 4
        os.kill(min(pids), signal.SIGKILL)  # uvicorn starts another worker
        deadline = time.monotonic() + 30
        while True:
            with httpx.Client(base_url=url) as client:
                pid = client.get("/admin/v1/status", headers=admin).json()["pid"]
            if pid not in pids:
                break  # the replacement serves
            assert time.monotonic() < deadline, "no replacement worker"
            time.sleep(0.2)
        assert {gauge(httpx.get(url + "/metrics").text, available) for _ in range(4)} == {1.0}
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert "Traceback" not in output


_WORKER = """
import sys
from journeykit.collector.metrics import Metrics
metrics = Metrics()
if sys.argv[1] != "starting":  # a worker that has opened its store and copied its state
    metrics.observe_decisions({}, 0, available=sys.argv[1] == "up")
sys.stdout.write(metrics.render().decode() if sys.argv[2] == "scrape" else "ready\\n")
sys.stdout.flush()
sys.stdin.read()  # alive (its live gauges count) until the test closes stdin
"""


def test_a_starting_worker_is_not_a_store_down(tmp_path: Path) -> None:
    # CI: a scrape answered while the other worker was still starting read
    # journeykit_decisions_store_available 0, since that worker's gauge was in the shared files
    # at 0 from its creation, before the worker had opened its profile store.
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def worker(state: str, action: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", _WORKER, state, action],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def scrape(state: str) -> float | None:
        process = worker(state, "scrape")
        text = process.communicate("", timeout=30)[0]
        found = re.search(r"^journeykit_decisions_store_available (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else None

    assert scrape("starting") is None  # no worker has a store yet: nothing to report
    serving = worker("up", "wait")
    try:
        assert serving.stdout
        assert serving.stdout.readline() == "ready\n"
        assert scrape("starting") == 1.0
        assert scrape("up") == 1.0
        assert scrape("down") == 0.0  # a live worker's store down is still the minimum
    finally:
        serving.communicate("", timeout=30)
