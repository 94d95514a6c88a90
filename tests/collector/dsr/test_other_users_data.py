"""A request about one person reaches no other person's ids through data about them.

Bob invites Alice (her email in his event's ``properties``), and Alice and Bob sign in on the
same family browser. Over a real collector's files and profile store.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dsr_shop import dsr, event
from helpers import RunningCollector, running_collector


def traffic() -> list[dict[str, Any]]:
    sofa = {"order_id": "o-alice", "total": 999, "products": [{"product_id": "sofa"}]}
    alice = {"userId": "u-alice", "anonymousId": "dev-1"}
    bob = {"userId": "u-bob", "anonymousId": "dev-bob"}
    return [
        event("identify", 1, **alice, traits={"email": "alice@example.com"}),
        event("track", 2, **alice, event="Order Completed", properties=sofa),
        event("identify", 3, userId="u-bob", anonymousId="dev-1", traits={"email": "bob@b.com"}),
        event("track", 4, **bob, event="Invite Sent", properties={"email": "alice@example.com"}),
        event("track", 5, **bob, event="Product Viewed", properties={"product_id": "lamp"}),
        event("page", 6, anonymousId="dev-bob", name="Bob's anonymous page"),
    ]


@pytest.fixture
def house(tmp_path: Path) -> Iterator[RunningCollector]:
    with running_collector(tmp_path / "data", consent_regime="opt_out") as running:
        answer = httpx.post(
            f"{running.url}/v1/batch", json={"batch": traffic()}, headers=running.auth()
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == len(traffic())
        time.sleep(1.0)  # past the profile store's write-behind interval
        yield running


def _export(running: RunningCollector, query: str, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{query}.zip"
    done = dsr(running.data_dir, "export", query, "--out", str(out))
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as archive:
        return {
            name.removesuffix(".json"): json.loads(archive.read(name))
            for name in archive.namelist()
            if name.endswith(".json")
        }


def test_an_email_in_another_users_event_does_not_make_that_user_the_subject(
    house: RunningCollector, tmp_path: Path
) -> None:
    export = _export(house, "alice@example.com", tmp_path)
    # The invite holds Alice's email, so it is in her export; Bob's other events are not.
    assert {e["messageId"] for e in export["events"]} == {"m-1", "m-2", "m-4"}
    searched = set(export["manifest"]["ids_searched"])
    assert {"u-alice", "dev-1"} <= searched
    assert not {"u-bob", "dev-bob"} & searched

    erased = dsr(house.data_dir, "erase", "alice@example.com", "--yes")
    assert erased.returncode == 0, erased.stderr
    left = {e["messageId"] for e in house.events}
    assert left == {"m-3", "m-5", "m-6"}


def test_a_profile_is_not_exported_under_a_device_another_user_signed_in_on(
    house: RunningCollector, tmp_path: Path
) -> None:
    # dev-1 was merged into Alice's profile (the first to sign in on it): Bob's export by
    # his email holds his own profile, not hers.
    bob = _export(house, "bob@b.com", tmp_path)
    assert bob["manifest"]["shared_device_ids"] == ["dev-1"]
    profile = bob.get("profile")
    assert profile is not None
    assert "sofa" not in json.dumps(profile)
    assert profile.get("orders", 0) == 0
    alice = _export(house, "u-alice", tmp_path)
    assert "sofa" in json.dumps(alice["profile"])
