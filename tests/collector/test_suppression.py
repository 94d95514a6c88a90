"""The suppression list: suppressed subjects' events are accepted, dropped and counted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from helpers import (
    PSEUDONYM_KEY,
    SERVER_ENV,
    WRITE_KEY,
    RunningCollector,
    basic_auth,
    running_collector,
    serve,
)
from pydantic import SecretStr

from journeykit.collector.suppression import InvalidSubject, SuppressionList
from journeykit.consent import FieldKind, Pseudonymizer, PseudonymKey

ADMIN_KEY = "admin-key-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SUBJECTS = "/admin/v1/suppressions"
ALICE = "alice-the-suppressed@example.org"  # not hex: must never show up in the store


def pseudonymizer(*keys: tuple[str, str]) -> Pseudonymizer:
    return Pseudonymizer([PseudonymKey(key_id=k, secret=SecretStr(v)) for k, v in keys])


K1 = ("k1", PSEUDONYM_KEY)
K2 = ("k2", "second-pseudonym-key-0123456789abcdef")


def track(user: str, n: int, *, anonymous: bool = False) -> dict[str, Any]:
    who = {"anonymousId": user} if anonymous else {"userId": user}
    return {"type": "track", "event": "Product Viewed", "messageId": f"{user}-{n}", **who}


def send(c: RunningCollector, *events: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(c.url + "/v1/batch", json={"batch": list(events)}, headers=c.auth())
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def stored_users(c: RunningCollector) -> list[str]:
    return [e.get("userId") or e["anonymousId"] for e in c.events]


@pytest.fixture
def admin_collector(tmp_path: Path) -> Any:
    with running_collector(tmp_path / "data", admin_key=SecretStr(ADMIN_KEY)) as running:
        yield running


def test_suppressed_subjects_are_dropped_counted_and_restored(
    admin_collector: RunningCollector,
) -> None:
    c = admin_collector
    assert send(c, track(ALICE, 0), track("bob", 0))["accepted"] == 2
    url = c.url + SUBJECTS + "/" + quote(ALICE, safe="")
    added = httpx.put(url, json={"reason": "ticket 1"}, headers=ADMIN)
    assert added.status_code == 201, added.text
    entry = added.json()["entry"]
    assert added.json()["suppressed"] is True
    assert entry["subject"] == pseudonymizer(K1).pseudonymize(ALICE, FieldKind.ID)
    assert (entry["keyId"], entry["reason"], entry["via"]) == ("k1", "ticket 1", "api")
    assert httpx.put(url, headers=ADMIN).status_code == 200  # already there: kept as it was
    assert httpx.get(url, headers=ADMIN).json()["entry"] == entry

    answer = send(c, track(ALICE, 1), track(ALICE, 2, anonymous=True), track("bob", 1))
    assert (answer["accepted"], answer["suppressed"], answer["dropped"]) == (1, 2, {})
    assert stored_users(c) == [ALICE, "bob", "bob"]
    metrics = httpx.get(c.url + "/metrics").text
    assert 'journeykit_events_total{outcome="dropped",reason="suppressed"} 2.0' in metrics
    store = c.data_dir / "suppression" / "suppressions.sqlite3"
    assert ALICE.encode() not in b"".join(p.read_bytes() for p in store.parent.iterdir())
    listed = httpx.get(c.url + SUBJECTS, headers=ADMIN).json()
    assert listed == {"ok": True, "suppressions": [entry], "next": None}

    lifted = httpx.delete(url, headers=ADMIN)
    assert lifted.status_code == 200
    assert (lifted.json()["suppressed"], lifted.json()["entry"]) == (False, None)
    assert httpx.delete(url, headers=ADMIN).status_code == 200  # idempotent
    answer = send(c, track(ALICE, 3))
    assert (answer["accepted"], answer["suppressed"]) == (1, 0)
    assert stored_users(c)[-1] == ALICE


def test_suppression_endpoints_need_the_admin_key(admin_collector: RunningCollector) -> None:
    url = admin_collector.url + SUBJECTS
    for method, path in (("PUT", "/x"), ("DELETE", "/x"), ("GET", "/x"), ("GET", "")):
        assert httpx.request(method, url + path).status_code == 401
        refused = httpx.request(method, url + path, headers=basic_auth(WRITE_KEY))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
    assert httpx.get(url + "/x", headers=ADMIN).json()["suppressed"] is False


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        ("PUT", "/bad%01id", None, "invalid_subject"),
        ("PUT", "/" + "x" * 513, None, "invalid_subject"),
        ("PUT", "/%20%20", None, "invalid_subject"),
        ("DELETE", "/tab%09in", None, "invalid_subject"),
        ("PUT", "/ok", b'{"reason": "' + b"r" * 201 + b'"}', "invalid_subject"),
        ("PUT", "/ok", b"{not json", "invalid_body"),
        ("PUT", "/ok", b'{"why": "x"}', "invalid_body"),
        ("PUT", "/ok", b'{"reason": 7}', "invalid_body"),
        ("PUT", "/ok", b" " * 5000, "invalid_body"),
        ("GET", "?limit=0", None, "invalid_query"),
        ("GET", "?limit=many", None, "invalid_query"),
    ],
)
def test_bad_subjects_and_bodies_are_400(
    admin_collector: RunningCollector, method: str, path: str, body: bytes | None, code: str
) -> None:
    url = admin_collector.url + SUBJECTS + path
    refused = httpx.request(method, url, content=body, headers=ADMIN)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == code
    assert "\x01" not in refused.text
    listed = httpx.get(admin_collector.url + SUBJECTS, headers=ADMIN).json()
    assert listed["suppressions"] == []


def test_a_line_break_in_the_path_matches_no_route(admin_collector: RunningCollector) -> None:
    # Starlette's path pattern stops at a line break; such a subject is no route at all.
    url = admin_collector.url + SUBJECTS + "/line%0Abreak"
    assert httpx.put(url, headers=ADMIN).status_code == 404
    assert httpx.get(admin_collector.url + SUBJECTS, headers=ADMIN).json()["suppressions"] == []


def test_the_list_pages_in_subject_order(admin_collector: RunningCollector) -> None:
    url = admin_collector.url + SUBJECTS
    for n in range(5):
        assert httpx.put(f"{url}/user-{n}", headers=ADMIN).status_code == 201
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = httpx.get(url, params=params, headers=ADMIN).json()
        seen += [e["subject"] for e in page["suppressions"]]
        after = page["next"]
        if after is None:
            break
    assert seen == sorted(seen)
    expected = {pseudonymizer(K1).pseudonymize(f"user-{n}", FieldKind.ID) for n in range(5)}
    assert set(seen) == expected


def test_entries_made_under_a_rotated_key_still_match(tmp_path: Path) -> None:
    old = SuppressionList.open(tmp_path, pseudonymizer(K1))
    old.add("bob", "request 7")
    old.close()
    rotated = pseudonymizer(K2, K1)  # k2 current, k1 still accepted
    current = rotated.pseudonymize("bob", FieldKind.ID)
    store = SuppressionList.open(tmp_path, rotated)
    assert store.is_suppressed(["bob"], [current])
    assert not store.is_suppressed(["carol"], [rotated.pseudonymize("carol", FieldKind.ID)])
    found = store.get("bob")
    assert found is not None
    assert found.key_id == "k1"
    assert store.remove("bob")
    store.refresh()
    assert not store.is_suppressed(["bob"], [current])
    store.close()
    dropped = SuppressionList.open(tmp_path, pseudonymizer(K2))
    dropped.add("dave")
    assert dropped.is_suppressed(["dave"], [pseudonymizer(K2).pseudonymize("dave", FieldKind.ID)])
    dropped.close()


def test_subjects_are_bounded_plain_text(tmp_path: Path) -> None:
    store = SuppressionList.open(tmp_path, pseudonymizer(K1))
    for bad in ("", "   ", "a\x00b", "tab\tin", "x" * 513):
        with pytest.raises(InvalidSubject):
            store.add(bad)
    with pytest.raises(InvalidSubject):
        store.add("ok", reason="r\nr")
    given = pseudonymizer(K1).pseudonymize("by-pseudonym", FieldKind.ID)
    assert store.add(given).subject == given  # a pseudonym is taken as it is
    assert len(store) == 1
    store.close()


def _dsr(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYKIT_")}
    return subprocess.run(
        [sys.executable, "-m", "journeykit.collector", "dsr", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env={**env, **SERVER_ENV},
        timeout=60,
        check=False,
    )


def test_two_workers_and_the_cli_share_the_list(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {**SERVER_ENV, "JOURNEYKIT_WRITE_KEYS": "worker-key", "JOURNEYKIT_ADMIN_KEY": ADMIN_KEY}
    counter = iter(range(10_000))

    def answers_by_worker(url: str, want_suppressed: bool) -> None:
        """Send ALICE's events until each of the two workers has answered as wanted."""
        agreed: set[int] = set()
        deadline = time.monotonic() + 60
        while len(agreed) < 2:
            assert time.monotonic() < deadline, f"only workers {agreed} agreed"
            with httpx.Client(base_url=url) as client:  # one connection: one worker
                pid = client.get("/admin/v1/status", headers=ADMIN).json()["pid"]
                body = {"batch": [track(ALICE, next(counter))]}
                answer = client.post("/v1/batch", json=body, headers=basic_auth("worker-key"))
            if answer.json()["suppressed"] == int(want_suppressed):
                agreed.add(pid)

    with serve(data_dir, "--workers", "2", env=env) as (url, _):
        answers_by_worker(url, want_suppressed=False)
        done = _dsr(data_dir, "suppress", ALICE, "--reason", "cli")
        assert done.returncode == 0, done.stderr
        assert ALICE not in done.stdout
        answers_by_worker(url, want_suppressed=True)  # the CLI's change reached both
        lifted = httpx.delete(url + SUBJECTS + "/" + quote(ALICE, safe=""), headers=ADMIN)
        assert lifted.status_code == 200
        answers_by_worker(url, want_suppressed=False)  # one worker's change reached both
    listed = _dsr(data_dir, "suppressions", "--json")
    assert (listed.returncode, listed.stdout) == (0, "")


def test_dsr_commands(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = _dsr(data_dir, "suppress", "bob", "--reason", "ticket 9")
    assert first.returncode == 0, first.stderr
    pseudonym = pseudonymizer(K1).pseudonymize("bob", FieldKind.ID)
    assert first.stdout.startswith(f"{pseudonym}: suppressed at ")
    assert "already suppressed" in _dsr(data_dir, "suppress", "bob").stdout
    listed = _dsr(data_dir, "suppressions")
    assert pseudonym in listed.stdout
    assert "ticket 9" in listed.stdout
    bad = _dsr(data_dir, "suppress", "bad\x01id")
    assert bad.returncode == 2
    assert "control characters" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert "suppression lifted" in _dsr(data_dir, "unsuppress", "bob").stdout
    assert "was not suppressed" in _dsr(data_dir, "unsuppress", "bob").stdout
