"""Fields configured for pseudonymization never reach the disk in the clear.

Accepted events are pseudonymized before the sink; a rejected event is kept "with its reasons"
in ``rejected/`` so nothing disappears, and it must not become the way around the rule: an
insider with disk access reads ``rejected/`` as easily as ``events/``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from helpers import RunningCollector

EMAIL = "jane.doe.at.rest@example.com"
PHONE = "+14155550199"


def everything_on_disk(root: Path) -> str:
    return "".join(
        p.read_text(encoding="utf-8", errors="replace") for p in root.rglob("*") if p.is_file()
    )


def files_holding(root: Path, *values: str) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and any(v.encode() in p.read_bytes() for v in values)
    )


def test_pseudonymized_fields_are_not_stored_in_the_clear(collector: RunningCollector) -> None:
    good = {
        "type": "identify",
        "userId": "u1",
        "traits": {"email": EMAIL, "phone": PHONE},
    }
    # Invalid on purpose (traits must be an object / track needs an event name), same PII.
    bad_track = {"type": "track", "userId": "u2", "properties": {"email": EMAIL, "phone": PHONE}}
    bad_identify = {"type": "identify", "traits": {"email": EMAIL}}  # no userId/anonymousId
    answer = httpx.post(
        collector.url + "/v1/batch",
        json={"batch": [good, bad_track, bad_identify]},
        headers=collector.auth(),
    )
    result = answer.json()
    assert result["accepted"] == 1
    assert len(result["rejected"]) == 2
    assert "hmac-sha256:" in everything_on_disk(collector.data_dir / "events")
    assert files_holding(collector.data_dir, EMAIL, PHONE) == []
