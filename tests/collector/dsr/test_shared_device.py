"""Data-subject requests on a shared device: one person's request never reaches another's data.

A family's browser (``dev-1``) is used anonymously, then by u1, then by u2 who signs in and
gives consent there, and u3 signs up on it (analytics.js sends ``alias(previousId=dev-1)``).
u1 also has a phone (``dev-2``); u4 alone uses ``dev-solo``. Over a real collector's files.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dsr_shop import dsr, event
from helpers import RunningCollector, running_collector
from pydantic import SecretStr

from journeykit.collector.dsr.subject import Subject, resolve
from journeykit.collector.keys import load_pseudonymizer

ADMIN_KEY = "admin-key-for-tests-0123456789"


def traffic() -> list[dict[str, Any]]:
    viewed = {"event": "Product Viewed", "properties": {"product_id": "p1"}}
    purposes = {"analytics": True, "personalization": True}
    consent = {"event": "Consent Updated", "properties": {"purposes": purposes}}
    return [
        event("page", 1, anonymousId="dev-1", name="Home"),
        event("identify", 2, userId="u1", anonymousId="dev-1", traits={"plan": "pro"}),
        event("track", 3, userId="u1", anonymousId="dev-1", **viewed),
        event("identify", 4, userId="u2", anonymousId="dev-1"),
        event("track", 5, userId="u2", anonymousId="dev-1", **viewed),
        event("track", 6, userId="u2", anonymousId="dev-1", **consent),
        event("alias", 7, userId="u3", previousId="dev-1"),
        event("track", 8, userId="u1", anonymousId="dev-2", **viewed),
        event("page", 9, anonymousId="dev-solo", name="Home"),
        event("identify", 10, userId="u4", anonymousId="dev-solo"),
        # In the ledger under pseudonyms: still one user of dev-solo, not two.
        event("track", 11, userId="u4", anonymousId="dev-solo", **consent),
    ]


@pytest.fixture
def family(tmp_path: Path) -> Iterator[RunningCollector]:
    with running_collector(
        tmp_path / "data", consent_regime="opt_out", admin_key=SecretStr(ADMIN_KEY)
    ) as running:
        answer = httpx.post(
            f"{running.url}/v1/batch", json={"batch": traffic()}, headers=running.auth()
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == len(traffic())
        yield running


def _resolve(running: RunningCollector, query: str) -> Subject:
    settings = running.app.state.collector.settings
    return resolve(running.data_dir, query, load_pseudonymizer(settings))


def _export(running: RunningCollector, query: str, tmp: Path) -> dict[str, Any]:
    answer = httpx.post(
        f"{running.url}/admin/v1/dsr/export",
        json={"subject": query},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert answer.status_code == 200, answer.text
    path = tmp / f"{query}.zip"
    path.write_bytes(answer.content)
    with zipfile.ZipFile(path) as archive:
        return {
            name.removesuffix(".json"): json.loads(archive.read(name))
            for name in ("events.json", "consent_history.json", "manifest.json")
        }


def _ids(events: list[dict[str, Any]]) -> set[str]:
    return {e["messageId"] for e in events}


@pytest.mark.parametrize(
    ("query", "events"),
    [
        # The device's anonymous page is each user's; another user's own events are not.
        ("u1", {"m-1", "m-2", "m-3", "m-8"}),
        ("u2", {"m-1", "m-4", "m-5", "m-6"}),
        ("u3", {"m-1", "m-7"}),
        # Asked about directly, a shared device leads to none of its users.
        ("dev-1", {"m-1"}),
        # A device one user alone was seen with leads to that user.
        ("dev-solo", {"m-9", "m-10", "m-11"}),
        ("dev-2", {"m-1", "m-2", "m-3", "m-8"}),
    ],
)
def test_an_access_request_holds_the_subjects_events_alone(
    family: RunningCollector, tmp_path: Path, query: str, events: set[str]
) -> None:
    export = _export(family, query, tmp_path)
    assert _ids(export["events"]) == events


def test_the_shared_device_is_named_and_not_followed(family: RunningCollector) -> None:
    u1 = _resolve(family, "u1")
    assert {"u1", "dev-1", "dev-2"} <= u1.ids
    assert not {"u2", "u3"} & u1.ids
    assert u1.shared == {"dev-1"}
    device = _resolve(family, "dev-1")
    assert not {"u1", "u2", "u3"} & device.ids
    assert device.shared == {"dev-1"}
    solo = _resolve(family, "dev-solo")
    assert ("u4" in solo.ids, solo.shared) == (True, frozenset())


def test_consent_history_holds_the_subjects_own_records(
    family: RunningCollector, tmp_path: Path
) -> None:
    # u2's consent was given on dev-1, and its ledger record names the device: it is u2's.
    assert len(_export(family, "u2", tmp_path)["consent_history"]) == 1
    u1 = _export(family, "u1", tmp_path)
    assert u1["consent_history"] == []
    assert u1["manifest"]["shared_device_ids"] == ["dev-1"]


def test_erasing_one_user_keeps_the_other_users_of_the_device(
    family: RunningCollector,
) -> None:
    answer = httpx.post(
        f"{family.url}/admin/v1/dsr/erase",
        json={"subject": "u1"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert answer.status_code == 200, answer.text
    detail = answer.json()["request"]["detail"]
    assert (detail["events_removed"], detail["shared_device_ids"]) == (4, 1)
    assert _ids(family.events) == {"m-4", "m-5", "m-6", "m-7", "m-9", "m-10", "m-11"}


def test_the_commands_tell_the_officer_about_the_shared_device(
    family: RunningCollector, tmp_path: Path
) -> None:
    out = tmp_path / "u1.zip"
    exported = dsr(family.data_dir, "export", "u1", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert "shared devices: dev-1 (also used by other users" in exported.stdout
    alone = dsr(family.data_dir, "export", "u4", "--out", str(tmp_path / "u4.zip"))
    assert alone.returncode == 0, alone.stderr
    assert "shared devices" not in alone.stdout
    erased = dsr(family.data_dir, "erase", "u1", "--yes")
    assert erased.returncode == 0, erased.stderr
    assert "shared device ids:       1 (suppressed too" in erased.stdout
