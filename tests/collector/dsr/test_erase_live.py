"""Erasure while a collector keeps writing: nothing of anyone else is lost or doubled.

``erase_events`` rewrites a file into a copy and renames the copy over it, under ``flock``;
the collector's sink takes the same lock around each group commit and reopens the path when
an erasure replaced its file. Without that, every event acknowledged after the first erasure
went into the unlinked old file: acknowledged, and gone.
"""

from __future__ import annotations

import threading
from collections import Counter

import httpx
from dsr_shop import Shop

from journeykit.collector.dsr.erase import erase_events
from journeykit.collector.dsr.subject import resolve

WRITERS = 3
ERASURES = 6


def _write_until(stop: threading.Event, shop: Shop, writer: int, acked: list[str]) -> None:
    """Post batches of another subject's events (one invalid each) until ``stop``."""
    url = shop.collector.url + "/v1/batch"
    with httpx.Client(headers=shop.collector.auth(), timeout=30) as client:
        n = 0
        while not stop.is_set() or n < 5:
            ids = [f"w{writer}-{n}-{i}" for i in range(10)]
            batch: list[dict[str, object]] = [
                {"type": "track", "messageId": m, "userId": f"other-{writer}", "event": "Tick"}
                for m in ids
            ]
            batch.append({"type": "track", "messageId": f"w{writer}-{n}-bad", "userId": "x"})
            answer = client.post(url, json={"batch": batch})
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] == len(ids)
            acked.extend(ids)
            n += 1


def test_erasure_during_ingestion_loses_and_doubles_nothing(shop: Shop) -> None:
    stop = threading.Event()
    acked: list[list[str]] = [[] for _ in range(WRITERS)]
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            _write_until(stop, shop, index, acked[index])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    erased = 0
    try:
        for round_ in range(ERASURES):
            # A fresh event of Alice's, in the file the collector is appending to right now.
            alice = {"type": "track", "messageId": f"alice-{round_}", "userId": "alice"}
            answer = httpx.post(
                shop.collector.url + "/v1/batch",
                json={"batch": [{**alice, "event": "Live"}]},
                headers=shop.collector.auth(),
            )
            assert answer.json()["accepted"] == 1
            subject = resolve(shop.data_dir, "alice", shop.pseudonymizer)
            result = erase_events(shop.data_dir, subject)
            assert result.events_removed >= 1
            erased += result.events_removed
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not errors, errors
    assert erased >= ERASURES + 6  # each live event, and the six of the shop's traffic

    stored = Counter(str(e.get("messageId")) for e in shop.collector.events)
    for ids in acked:
        assert ids, "a writer got nothing acknowledged"
        missing = [m for m in ids if stored[m] == 0]
        doubled = [m for m in ids if stored[m] > 1]
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
        assert not doubled, f"{len(doubled)} events stored twice, e.g. {doubled[:3]}"
    assert not any(m.startswith("alice-") for m in stored)
    subject = resolve(shop.data_dir, "alice", shop.pseudonymizer)
    assert not [e for e in shop.collector.events if subject.owns(e)]
    assert not [r for r in shop.collector.rejected if subject.owns(r.get("event") or {})]
    # The writers' rejected events, appended to the rejected file Alice's erasure rewrote.
    rejected = Counter(str(r.get("messageId")) for r in shop.collector.rejected)
    expected_bad = {f"{m.rsplit('-', 1)[0]}-bad" for ids in acked for m in ids}
    assert {m: rejected[m] for m in expected_bad} == dict.fromkeys(expected_bad, 1)
