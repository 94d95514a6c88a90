"""Workers of one data dir share consent: a choice recorded by one governs the next event on any."""

from __future__ import annotations

from pathlib import Path

import httpx
from helpers import WRITE_KEY, basic_auth, serve


def test_consent_given_through_one_worker_holds_on_the_others(tmp_path: Path) -> None:
    env = {"JOURNEYKIT_WRITE_KEYS": WRITE_KEY, "JOURNEYKIT_CONSENT_REGIME": "opt_in"}
    with serve(tmp_path / "data", "--workers", "2", env=env) as (url, _):
        for n in range(30):
            user = f"w{n}"
            consent = {
                "type": "track",
                "userId": user,
                "event": "Consent Updated",
                "properties": {"purposes": {"analytics": True}},
            }
            event = {"type": "track", "userId": user, "event": "Page Read"}
            # A new connection per request: uvicorn's workers take turns accepting them.
            for message in (consent, event):
                answer = httpx.post(
                    f"{url}/v1/batch", json={"batch": [message]}, headers=basic_auth(WRITE_KEY)
                )
                assert answer.json()["accepted"] == 1, (n, answer.json())
