"""Collectors on different hosts (data dirs) share consent through Redis (issues #4 and #9).

Real uvicorn collectors, each with its own data dir, on one real redis-server of the test's
own (so it can be stopped and started again on its port). Every wait polls with a deadline.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from helpers import PSEUDONYM_KEY, RedisProcess, running_collector
from pydantic import SecretStr

from journeykit.collector._consent_store import ConsentStore
from journeykit.collector._consent_sync import ConsentSync
from journeykit.consent import (
    ConsentLedger,
    FieldKind,
    LedgerRecord,
    Pseudonymizer,
    PseudonymKey,
    Regime,
)

DEADLINE = 10.0
_ids = itertools.count()


@pytest.fixture
def redis_server(redis_process: RedisProcess) -> RedisProcess:
    """The test's own redis-server (``tests/conftest.py``), started; stopped after the test."""
    redis_process.start()
    return redis_process


def settings(server: RedisProcess, **more: Any) -> dict[str, Any]:
    return {
        "profile_store": "redis",
        "redis_url": server.url,
        "consent_regime": "opt_in",
        "consent_sync_seconds": 0.05,
        **more,
    }


def consent(user: str, granted: bool) -> dict[str, Any]:
    purposes = {"analytics": granted, "personalization": granted}
    return {
        "type": "track",
        "userId": user,
        "event": "Consent Updated",
        "messageId": f"consent-{next(_ids)}",
        "properties": {"purposes": purposes},
    }


def send(collector: Any, message: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(
        f"{collector.url}/v1/batch", json={"batch": [message]}, headers=collector.auth()
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def view(collector: Any, user: str) -> dict[str, Any]:
    """Send one new "Product Viewed" of ``user``; the answer."""
    message = {
        "type": "track",
        "userId": user,
        "event": "Product Viewed",
        "messageId": f"view-{next(_ids)}",
        "properties": {"product_id": "p1", "price": 12},
    }
    return send(collector, message)


def decision(collector: Any, user: str) -> str:
    answer = httpx.get(f"{collector.url}/v1/decisions/{user}", headers=collector.auth())
    assert answer.status_code == 200, answer.text
    return str(answer.json()["personalization"])


def until(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check`` until it returns something true; fail after the deadline."""
    deadline = time.monotonic() + DEADLINE
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def accepted(answer: dict[str, Any]) -> bool:
    return answer["accepted"] == 1


def denied(answer: dict[str, Any]) -> bool:
    return answer["accepted"] == 0 and answer["dropped"] == {"denied:analytics": 1}


def metrics(collector: Any) -> dict[str, float]:
    text = httpx.get(f"{collector.url}/metrics").text
    out = {}
    for line in text.splitlines():
        if line.startswith("journeykit_consent_sync"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def consent_records(data_dir: Path) -> list[LedgerRecord]:
    ledger = data_dir / "consent" / "ledger.ndjson"
    if not ledger.exists():
        return []
    lines = ledger.read_bytes().splitlines()
    records = [LedgerRecord.from_json(orjson.loads(line), n) for n, line in enumerate(lines, 1)]
    return [r for r in records if r.kind == "consent"]


def test_consent_through_one_host_governs_the_other(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    with (
        running_collector(tmp_path / "a", **settings(redis_server)) as a,
        running_collector(tmp_path / "b", **settings(redis_server)) as b,
    ):
        # Opt-in, nothing recorded anywhere: B drops the subject's events.
        assert view(b, "ivy")["dropped"] == {"no_consent": 1}
        assert send(a, consent("ivy", True))["accepted"] == 1
        until(lambda: accepted(view(b, "ivy")), "B to accept ivy's events")
        until(lambda: decision(b, "ivy") == "granted", "B's decision to be granted")

        assert send(a, consent("ivy", False))["accepted"] == 1
        until(lambda: denied(view(b, "ivy")), "B to drop ivy's events")
        assert decision(b, "ivy") == "not_consented"
        # Each host's ledger is the evidence of what it received: B's holds nothing of ivy.
        assert len(consent_records(tmp_path / "a")) == 2
        assert consent_records(tmp_path / "b") == []
        counts = metrics(b)
        assert counts['journeykit_consent_sync{name="applied"}'] == 2
        assert counts["journeykit_consent_sync_available"] == 1
        assert metrics(a)['journeykit_consent_sync{name="published"}'] == 2


def test_consent_recorded_during_an_outage_reaches_the_other_host(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    with (
        running_collector(tmp_path / "a", **settings(redis_server)) as a,
        running_collector(tmp_path / "b", **settings(redis_server)) as b,
    ):
        send(a, consent("ivy", True))
        until(lambda: accepted(view(b, "ivy")), "B to accept ivy's events")

        redis_server.stop()
        # A records the withdrawal in its ledger and answers as usual.
        assert send(a, consent("ivy", False))["accepted"] == 1
        assert denied(view(a, "ivy"))
        until(lambda: metrics(a)["journeykit_consent_sync_available"] == 0, "A to see Redis gone")
        # B keeps working on what it knows (the grant) until Redis is back.
        assert accepted(view(b, "ivy"))

        # Back without its data (no persistence): A publishes its ledger again.
        redis_server.start()
        until(lambda: denied(view(b, "ivy")), "B to drop ivy's events after the outage")
        until(lambda: metrics(a)["journeykit_consent_sync_available"] == 1, "A to recover")
        assert metrics(a)['journeykit_consent_sync{name="failures"}'] >= 1


def test_a_collector_started_later_learns_earlier_consent(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    with running_collector(tmp_path / "b", **settings(redis_server)) as b:
        assert view(b, "ivy")["dropped"] == {"no_consent": 1}
    stream = redis.Redis.from_url(redis_server.url)
    with running_collector(tmp_path / "a", **settings(redis_server)) as a:
        send(a, consent("ivy", True))
        send(a, consent("eve", True))
        send(a, consent("eve", False))
        until(lambda: stream.xlen("jk:consent") == 3, "A to publish")
    # A fresh process on B's data dir, and one on a new data dir: both know before serving.
    for data_dir in (tmp_path / "b", tmp_path / "c"):
        with running_collector(data_dir, **settings(redis_server)) as late:
            assert accepted(view(late, "ivy"))
            assert denied(view(late, "eve"))
            assert decision(late, "ivy") == "granted"
    stream.close()


GOOD = {
    "subject": "x",
    "linked_ids": [],
    "granted": ["analytics"],
    "denied": [],
    "source": "api",
    "at": "2025-01-01T00:00:00+00:00",
    "ledger": "elsewhere",
    "seq": 1,
}


def test_bad_entries_are_counted_and_skipped(tmp_path: Path, redis_server: RedisProcess) -> None:
    stream = redis.Redis.from_url(redis_server.url)
    with running_collector(tmp_path / "b", **settings(redis_server)) as b:
        stream.xadd("jk:consent", {"r": orjson.dumps({**GOOD, "granted": ["telepathy"]})})
        stream.xadd("jk:consent", {"r": orjson.dumps({"subject": "y"})})  # fields missing
        stream.xadd("jk:consent", {"r": b"{not json"})
        stream.xadd("jk:consent", {"other": b"field"})
        stream.xadd("jk:consent", {"r": orjson.dumps(GOOD)})
        until(lambda: metrics(b)['journeykit_consent_sync{name="applied"}'] == 1, "the good one")
        assert metrics(b)['journeykit_consent_sync{name="invalid"}'] == 4
    stream.close()


def test_consent_trimmed_from_the_stream_is_read_from_the_snapshot(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    with running_collector(tmp_path / "a", **settings(redis_server)) as a:
        send(a, consent("ivy", True))
        until(lambda: client.xlen("jk:consent") == 1, "A to publish")
    client.xtrim("jk:consent", maxlen=0, approximate=False)
    with running_collector(tmp_path / "c", **settings(redis_server)) as late:
        assert accepted(view(late, "ivy"))

    # A running reader that falls behind past the trimmed entries reads the snapshot again.
    store = ConsentStore(Regime.OPT_IN)
    sync = ConsentSync(store, tmp_path / "none.ndjson", client, client, 0.05, 1_000)
    assert sync.catch_up()
    assert len(store) == 1  # ivy, from the snapshot
    client.hset("jk:consent:subjects", "x", orjson.dumps(GOOD) + b"\n")  # as the script does
    for _ in range(3):
        client.xadd("jk:consent", {"r": orjson.dumps(GOOD)})
    client.xtrim("jk:consent", maxlen=1, approximate=False)  # two never read by this reader
    assert sync.catch_up()
    assert (sync.stats["gaps"], sync.stats["snapshot_loads"]) == (1, 2)
    assert store.state(["x"]) is not None
    client.close()


def test_redis_restarted_empty_gets_the_consent_back(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    with running_collector(tmp_path / "a", **settings(redis_server)) as a:
        send(a, consent("ivy", True))
        stream = redis.Redis.from_url(redis_server.url)
        until(lambda: stream.xlen("jk:consent") == 1, "A to publish")
        redis_server.stop()
        redis_server.start()  # without its data: the stream is gone
        # A has nothing new to publish, yet notices and publishes its ledger again.
        until(lambda: stream.xlen("jk:consent") == 1, "A to publish its ledger again")
        stream.close()
        with running_collector(tmp_path / "c", **settings(redis_server)) as late:
            assert accepted(view(late, "ivy"))


def test_hosts_whose_ledgers_begin_alike_still_hear_each_other(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    # Both stored the same first consent (a resend to the other host while Redis was away):
    # a ledger id taken from that record alone made each skip the other's records as its own.
    ids = Pseudonymizer([PseudonymKey(key_id="k1", secret=SecretStr(PSEUDONYM_KEY))])
    subject = ids.pseudonymize("ivy", FieldKind.ID)
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    for host in ("a", "b"):
        with ConsentLedger.open(tmp_path / host) as ledger:
            ledger.append(subject, granted=["analytics", "personalization"], at=at)
    with (
        running_collector(tmp_path / "a", **settings(redis_server)) as a,
        running_collector(tmp_path / "b", **settings(redis_server)) as b,
    ):
        assert accepted(view(a, "ivy"))
        assert send(b, consent("ivy", False))["accepted"] == 1
        until(lambda: denied(view(a, "ivy")), "A to drop ivy's events")
