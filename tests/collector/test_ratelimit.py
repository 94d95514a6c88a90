"""Per-key rate limits (429 + Retry-After) and per-key sources in stored events."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from helpers import WRITE_KEY, basic_auth, running_collector

from journeykit.collector.ratelimit import TokenBucket, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_spends_refills_and_says_how_long_to_wait() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, capacity=4, clock=clock)
    assert bucket.acquire(3) == 0
    assert bucket.acquire(2) == pytest.approx(0.5)  # 1 token left, 2 needed, 2 tokens/s
    assert bucket.retry_after(1) == 0  # a refusal takes nothing
    clock.now += 0.5
    assert bucket.acquire(2) == 0
    clock.now += 100
    assert bucket.retry_after(4) == 0  # refilled, but never past the capacity
    assert bucket.acquire(4) == 0
    assert bucket.acquire(1) == pytest.approx(0.5)


def test_a_batch_larger_than_the_burst_waits_for_a_full_bucket_and_leaves_debt() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10.0, capacity=10, clock=clock)
    assert bucket.acquire(25) == 0  # full bucket: let through, 15 tokens of debt
    assert bucket.acquire(1) == pytest.approx(1.6)
    clock.now += 1.6
    assert bucket.acquire(1) == 0
    assert bucket.acquire(25) == pytest.approx(1.0)  # needs a full bucket again, not 25


def test_clock_going_back_does_not_drain_the_bucket() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=1.0, capacity=2, clock=clock)
    clock.now -= 50
    assert bucket.acquire(2) == 0


def test_retry_after_header_rounds_up() -> None:
    assert [retry_after_header(s) for s in (0.0, 0.2, 1.0, 1.01, 999.5)] == [
        "1",
        "1",
        "1",
        "2",
        "1000",
    ]
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(rate=0, capacity=1)


def _batch(n: int, **extra: object) -> dict[str, object]:
    return {
        "batch": [{"type": "track", "userId": "u", "event": f"E{i}", **extra} for i in range(n)]
    }


def test_over_the_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    keys = (
        {"key": WRITE_KEY, "source": "web", "rate": 0.001, "burst": 3},
        {"key": "unlimited-key", "source": "server"},
    )
    with running_collector(tmp_path, write_keys=keys) as c:
        assert httpx.post(c.url + "/v1/batch", json=_batch(2), headers=c.auth()).status_code == 200
        # Events are counted, not requests: 1 token left, a batch of 2 is refused whole.
        refused = httpx.post(c.url + "/v1/batch", json=_batch(2), headers=c.auth())
        assert refused.status_code == 429
        assert 990 <= int(refused.headers["Retry-After"]) <= 1000  # 1 token at 0.001/s
        assert refused.json()["ok"] is False
        assert refused.json()["error"]["code"] == "rate_limited"
        # The body key is limited the same way as the header key.
        body_key = {**_batch(2), "writeKey": WRITE_KEY}
        assert httpx.post(c.url + "/v1/batch", json=body_key).status_code == 429
        assert httpx.post(c.url + "/v1/batch", json=_batch(1), headers=c.auth()).status_code == 200
        # Empty bucket: refused before the body is read, so even a body that is not JSON is 429.
        garbage = httpx.post(
            c.url + "/v1/batch",
            content=b"{not json",
            headers={**c.auth(), "Content-Type": "application/json"},
        )
        assert garbage.status_code == 429
        # Other keys have their own bucket (here: none).
        other = basic_auth("unlimited-key")
        assert httpx.post(c.url + "/v1/batch", json=_batch(50), headers=other).status_code == 200
        # A wrong key is still 401, not 429: authentication comes first.
        wrong = httpx.post(c.url + "/v1/batch", json=_batch(1), headers=basic_auth("nope"))
        assert wrong.status_code == 401
        assert len(c.events) == 53


def test_events_carry_their_keys_source_and_never_the_key(tmp_path: Path) -> None:
    keys = ({"key": WRITE_KEY, "source": "web"}, {"key": "app-key-0123456789", "source": "app"})
    with running_collector(tmp_path, write_keys=keys) as c:
        forged = _batch(1, _source="forged")
        assert httpx.post(c.url + "/v1/batch", json=forged, headers=c.auth()).is_success
        app = {"type": "track", "userId": "u", "event": "A", "writeKey": "app-key-0123456789"}
        assert httpx.post(c.url + "/v1/track", json=app).is_success
        assert sorted(e["_source"] for e in c.events) == ["app", "web"]
    stored = "".join(p.read_text() for p in (tmp_path / "events").rglob("*.ndjson"))
    assert WRITE_KEY not in stored
    assert "app-key-0123456789" not in stored
