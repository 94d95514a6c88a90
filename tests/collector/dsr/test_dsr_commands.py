"""Access and erasure requests end to end: the CLI and the admin API on a real collector's data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
from dsr_shop import Shop, dsr
from helpers import PSEUDONYM_KEY, WRITE_KEY, running_collector
from pydantic import SecretStr

from journeykit.consent import ConsentLedger, verify_ledger
from journeykit.consent.history import iter_records

ADMIN_KEY = "admin-key-0123456789abcdef"
ALICE_IDS = {"m-1", "m-2", "m-3", "m-4", "m-5", "m-6"}


def send_as(shop: Shop, user: str, n: int) -> dict[str, Any]:
    event = {"type": "track", "userId": user, "event": "Later", "messageId": f"late-{n}"}
    answer = httpx.post(
        f"{shop.collector.url}/v1/batch", json={"batch": [event]}, headers=shop.collector.auth()
    )
    body: dict[str, Any] = answer.json()
    return body


def test_cli_export_erase_and_request_log(shop: Shop, tmp_path: Path) -> None:
    out = tmp_path / "alice.zip"
    exported = dsr(shop.data_dir, "export", "alice", "--out", str(out), "--reference", "T-7")
    assert exported.returncode == 0, exported.stderr
    with zipfile.ZipFile(out) as archive:
        events = json.loads(archive.read("events.json"))
    assert {e["messageId"] for e in events} == ALICE_IDS

    erased = dsr(shop.data_dir, "erase", "alice@example.com", "--yes", "--law", "ccpa")
    assert erased.returncode == 0, erased.stderr
    assert "events removed:          6" in erased.stdout
    left = {e["messageId"] for e in shop.collector.events}
    assert left.isdisjoint(ALICE_IDS)
    assert "m-7" in left  # Bob's

    listed = dsr(shop.data_dir, "requests", "--json")
    requests = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["kind"], r["status"], r["law"]) for r in requests] == [
        ("access", "completed", "gdpr"),
        ("erasure", "completed", "ccpa"),
    ]
    assert requests[0]["reference"] == "T-7"
    assert "alice" not in listed.stdout  # the log names subjects by pseudonym only
    table = dsr(shop.data_dir, "list").stdout.splitlines()  # the same log, for people
    assert [line.split()[1:3] for line in table] == [
        ["access", "completed"],
        ["erasure", "completed"],
    ]

    receipts = [
        r
        for r in iter_records(shop.data_dir / "consent" / "ledger.ndjson")
        if r.kind == "erasure_receipt"
    ]
    assert [r.reference for r in receipts] == [requests[1]["id"]]
    assert verify_ledger(shop.data_dir / "consent" / "ledger.ndjson").ok

    # The running collector picks up the suppression: Alice's later events are dropped.
    deadline = time.monotonic() + 10
    n = 0
    while (answer := send_as(shop, "alice", n))["suppressed"] != 1:
        assert answer["accepted"] == 1
        assert time.monotonic() < deadline, "the suppression never reached the collector"
        n += 1
        time.sleep(0.1)
    assert send_as(shop, "bob", 1000)["accepted"] == 1


def test_without_the_collectors_key_a_command_refuses_and_makes_no_key(shop: Shop) -> None:
    # A production data dir (the shop's collector has its keys): a command run without them
    # must not suppress under a made-up key nor leave demo keys the collector would pick up.
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYKIT_")}
    before = sorted(p.name for p in shop.data_dir.rglob("*"))
    dsr_command = [sys.executable, "-m", "journeykit.collector", "dsr"]
    for command in (["suppress", "bob"], ["erase", "bob", "--yes"]):
        done = subprocess.run(
            [*dsr_command, *command, "--data-dir", str(shop.data_dir)],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stdout
        assert "no pseudonymization key" in done.stderr
    assert sorted(p.name for p in shop.data_dir.rglob("*")) == before
    assert send_as(shop, "bob", 1)["accepted"] == 1


def test_erase_without_yes_erases_only_on_a_yes_even_from_a_pipe(shop: Shop) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYKIT_")}
    env |= {"JOURNEYKIT_PSEUDONYM_KEY": PSEUDONYM_KEY, "JOURNEYKIT_WRITE_KEYS": WRITE_KEY}
    command = [sys.executable, "-m", "journeykit.collector", "dsr", "erase", "alice"]
    command += ["--data-dir", str(shop.data_dir)]
    for answer in ("n\n", ""):  # a no, and no answer at all (a script without --yes)
        done = subprocess.run(
            command, input=answer, capture_output=True, text=True, env=env, check=False
        )
        assert (done.returncode, "nothing erased" in done.stderr) == (2, True)
    assert {e["messageId"] for e in shop.collector.events} >= ALICE_IDS
    done = subprocess.run(command, input="y\n", capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert not ALICE_IDS & {e["messageId"] for e in shop.collector.events}


def test_cli_refuses_a_bad_subject_and_records_nothing(shop: Shop, tmp_path: Path) -> None:
    result = dsr(shop.data_dir, "export", "a\tb", "--out", str(tmp_path / "x.zip"))
    assert result.returncode == 2
    assert "control characters" in result.stderr
    assert dsr(shop.data_dir, "requests").stdout == ""


def test_a_damaged_ledger_or_database_is_one_clear_line(shop: Shop, tmp_path: Path) -> None:
    with ConsentLedger.open(shop.data_dir) as consent:
        consent.append("someone", granted=["analytics"])
    ledger = shop.data_dir / "consent" / "ledger.ndjson"
    kept = ledger.read_bytes()
    with ledger.open("ab") as handle:
        handle.write(b'["damaged"]\n')
    result = dsr(shop.data_dir, "export", "alice", "--out", str(tmp_path / "a.zip"))
    assert (result.returncode, "Traceback" in result.stderr) == (2, False)
    assert "is not a JSON record" in result.stderr
    ledger.write_bytes(kept)
    broken = tmp_path / "broken"
    (broken / "suppression").mkdir(parents=True)
    (broken / "suppression" / "suppressions.sqlite3").write_bytes(b"not a database" * 100)
    for command in (["suppress", "bob"], ["suppressions"], ["erase", "bob", "--yes"]):
        result = dsr(broken, *command)
        assert (result.returncode, "Traceback" in result.stderr) == (2, False), command
        assert "a database under the data directory cannot be used" in result.stderr


def test_admin_api_export_erase_and_requests(tmp_path: Path) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with running_collector(tmp_path / "data", admin_key=SecretStr(ADMIN_KEY)) as running:
        batch = [
            {"type": "track", "userId": "zoe", "event": "Product Viewed", "messageId": "z1"},
            {"type": "track", "userId": "yan", "event": "Product Viewed", "messageId": "y1"},
        ]
        httpx.post(f"{running.url}/v1/batch", json={"batch": batch}, headers=running.auth())
        export = httpx.post(
            f"{running.url}/admin/v1/dsr/export", json={"subject": "zoe"}, headers=admin
        )
        assert export.status_code == 200
        assert export.headers["content-type"] == "application/zip"
        path = tmp_path / "zoe.zip"
        path.write_bytes(export.content)
        with zipfile.ZipFile(path) as archive:
            assert [e["messageId"] for e in json.loads(archive.read("events.json"))] == ["z1"]
        # The zip is deleted once sent (a background task right after the answer).
        exports = running.data_dir / "dsr" / "exports"
        deadline = time.monotonic() + 10
        while list(exports.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not list(exports.iterdir())

        erase = httpx.post(
            f"{running.url}/admin/v1/dsr/erase", json={"subject": "zoe"}, headers=admin
        )
        assert erase.status_code == 200
        assert erase.json()["request"]["detail"]["events_removed"] == 1
        assert [e["messageId"] for e in running.events] == ["y1"]

        listing = httpx.get(f"{running.url}/admin/v1/dsr/requests", headers=admin).json()
        assert [r["kind"] for r in listing["requests"]] == ["access", "erasure"]
        assert export.headers["x-request-id"] == listing["requests"][0]["id"]

        bad = httpx.post(f"{running.url}/admin/v1/dsr/erase", json={"who": "x"}, headers=admin)
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_body")
        forbidden = httpx.post(
            f"{running.url}/admin/v1/dsr/erase", json={"subject": "yan"}, headers=running.auth()
        )
        assert forbidden.status_code == 403
        assert [e["messageId"] for e in running.events] == ["y1"]
