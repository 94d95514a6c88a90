"""No key and no pseudonymized value ever reaches the logs.

One served collector, at the most verbose level, goes through what an operator's logs see:
auth failures of every kind, admin calls, consent changes, pseudonymization, rejected events
and an internal error. Everything it printed (stdout and stderr, text and JSON formats) is then
searched for the three secrets, in the clear and as sent in Basic auth, and for the raw
personal values the pseudonymization replaced.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers import PSEUDONYM_KEY, basic_auth, serve

WRITE = "write-key-sec-0123456789"
ADMIN = "admin-key-sec-0123456789abcdef"
EMAIL = "jane.doe.secret@example.com"
PHONE = "+14155550123"
IP = "203.0.113.77"
USER = "user-raw-id-4242"


def secrets() -> list[str]:
    out = [WRITE, ADMIN, PSEUDONYM_KEY]
    out += [base64.b64encode(f"{s}:".encode()).decode() for s in (WRITE, ADMIN)]
    return out


def traffic(url: str) -> None:
    consent = {"categoryPreferences": {"analytics": True, "marketing": True}}
    event = {
        "type": "identify",
        "userId": USER,
        "traits": {"email": EMAIL, "phone": PHONE},
        "context": {"ip": IP, "consent": consent},
    }
    ok = httpx.post(url + "/v1/batch", json={"batch": [event]}, headers=basic_auth(WRITE))
    assert ok.json()["accepted"] == 1
    # Rejected (no "event"), carrying the same personal data.
    bad = {"type": "track", "userId": USER, "properties": {"email": EMAIL}}
    assert httpx.post(url + "/v1/batch", json={"batch": [bad]}, headers=basic_auth(WRITE))
    for headers in (basic_auth("wrong-" + WRITE), {"Authorization": f"Bearer {WRITE}"}, {}):
        assert httpx.post(url + "/v1/track", json=event, headers=headers).status_code == 401
    body = {"batch": [event], "writeKey": "wrong-" + WRITE}
    assert httpx.post(url + "/v1/batch", json=body).status_code == 401
    status = url + "/admin/v1/status"
    assert httpx.get(status, headers={"Authorization": f"Bearer {ADMIN}"}).is_success
    assert httpx.get(status, headers={"Authorization": f"Bearer {WRITE}"}).status_code == 403
    assert httpx.get(status, headers={"Authorization": f"Bearer x{ADMIN}"}).status_code == 401
    # An internal error, so a traceback is logged (the nesting defect of test_bounds.py;
    # once fixed this is a plain rejection, and the search below still runs).
    deep = '{"batch": [{"type": "track", "userId": "%s", "event": "E", "properties": %s}]}'
    nested = '{"email":"' + EMAIL + '","a":' * 300 + "1" + "}" * 300
    httpx.post(
        url + "/v1/batch",
        content=deep % (USER, nested),
        headers={**basic_auth(WRITE), "Content-Type": "application/json"},
    )


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_logs_hold_no_secret_and_no_pseudonymized_value(tmp_path: Path, log_format: str) -> None:
    env = {"JOURNEYKIT_WRITE_KEYS": WRITE, "JOURNEYKIT_ADMIN_KEY": ADMIN}
    args = ("--consent-regime", "opt_in", "--log-level", "trace", "--log-format", log_format)
    with serve(tmp_path / "data", *args, env=env) as (url, process):
        traffic(url)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0]
    assert "Started server process" in output or "startup" in output.lower()  # logs captured
    for secret in secrets():
        assert secret not in output, "a key is in the logs"
    for value in (EMAIL, PHONE, IP):
        assert value not in output, f"{value} is in the logs"
    # The events were pseudonymized on disk, so the search above looked at a real run.
    stored = "".join(p.read_text() for p in (tmp_path / "data" / "events").rglob("*.ndjson"))
    assert "hmac-sha256:" in stored
    assert EMAIL not in stored


def test_consent_tools_print_no_key(tmp_path: Path) -> None:
    env = {"JOURNEYKIT_WRITE_KEYS": WRITE, "JOURNEYKIT_ADMIN_KEY": ADMIN}
    with serve(tmp_path / "data", "--consent-regime", "opt_in", env=env) as (url, _):
        traffic(url)
    outputs = []
    data_dir = ("--data-dir", str(tmp_path / "data"))
    for command in (["history", EMAIL], ["state", USER, "--at", "2100-01-01T00:00:00Z"]):
        done = subprocess.run(
            [sys.executable, "-m", "journeykit.collector", "consent", *command, *data_dir],
            capture_output=True,
            text=True,
            env={"JOURNEYKIT_PSEUDONYM_KEY": PSEUDONYM_KEY, "PATH": "/usr/bin:/bin"},
            timeout=60,
            check=True,
        )
        outputs.append(done.stdout + done.stderr)
    assert "1 record(s)" in outputs[0] or "record(s)" in outputs[0]
    for secret in secrets():
        assert all(secret not in out for out in outputs)
