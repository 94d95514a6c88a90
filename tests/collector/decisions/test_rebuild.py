"""rebuild(): profiles come back from the collector's NDJSON event files into a fresh store."""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from decisions_helpers import EngineFactory, add, iso, order, view
from helpers import WRITE_KEY, basic_auth, running_collector

from journeykit.collector.decisions import DecisionSettings, rebuild


@pytest.fixture
def mode() -> str:
    return "queued"


def _consented(subject: str) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": subject,
        "event": "Consent Updated",
        "properties": {"purposes": {"analytics": True, "personalization": True}},
    }


def test_rebuild_replays_the_event_files_into_a_fresh_store(
    tmp_path: Path, settings: DecisionSettings, make_engine: EngineFactory
) -> None:
    data = tmp_path / "data"
    now = time.time()
    stale = make_engine()
    stale.update([view("ghost", "p0", now - 60)])
    assert stale.flush()
    ann = [_consented("ann"), *(view("ann", f"p{i}", now - 600 + i) for i in range(3))]
    ann.append(add("ann", "p1", now - 300))
    bob = [_consented("bob"), order("bob", now - 3600, 700.0, ["p1", "p2"])]
    with running_collector(data, decisions=False, consent_regime="opt_out") as collector:
        for batch in (ann, bob):
            answer = httpx.post(
                f"{collector.url}/v1/batch", json={"batch": batch}, headers=basic_auth(WRITE_KEY)
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] == len(batch)
    hour = data / "events" / "dt=2026-03-01" / "hr=08"
    hour.mkdir(parents=True)
    carl = {**view("carl", "p9", now - 7200), "receivedAt": iso(now - 7200)}
    with gzip.open(hour / "other-host.ndjson.gz", "wb") as handle:
        handle.write(orjson.dumps(carl) + b"\n")
    (hour / "torn.ndjson").write_bytes(b'{"type": "track", "userId": "carl", "ev')

    result = rebuild(settings, data)

    assert result.events == len(ann) + len(bob) + 1
    assert result.skipped == {"bad_json": 1}
    assert result.files >= 3
    engine = make_engine()
    decided = engine.decide_many(["ann", "bob", "ghost", "carl"])
    assert "high_intent" in decided["ann"].segments
    assert "value_elite" in decided["bob"].segments
    assert decided["ghost"].personalization == "not_consented"  # gone: no profile, no consent
    assert engine._store.fetch(["ghost"]) == {}
    assert engine._store.fetch(["carl"])["carl"]["views"] == 1
    # Item statistics came back too: recommendations for carl's category.
    recs = engine.decide("carl", personalization_granted=True).recommendations
    assert recs
    assert recs[0].source in ("co_occurrence", "category")


def test_rebuild_of_an_empty_data_dir_empties_the_store(
    tmp_path: Path, settings: DecisionSettings, make_engine: EngineFactory
) -> None:
    engine = make_engine()
    engine.update([view("ghost", "p0", time.time() - 60)])
    assert engine.flush()
    result = rebuild(settings, tmp_path / "data")
    assert (result.files, result.events) == (0, 0)
    assert engine._store.fetch(["ghost"]) == {}
