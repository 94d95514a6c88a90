"""Several requests written together (``Ingestor.commit_many``, the collector's writer thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from pydantic import SecretStr

from journeykit.collector._committer import Committer
from journeykit.collector.app import commit_wait
from journeykit.collector.dedup import Deduplicator
from journeykit.collector.ingest import Envelope, Ingestor, IngestResult, Prepared
from journeykit.collector.settings import CollectorSettings
from journeykit.collector.sink import NdjsonSink

T0 = datetime(2026, 11, 23, 10, 59, 59, tzinfo=UTC)

Committed = list[IngestResult | OSError]


def ingestor(root: Path) -> tuple[Ingestor, NdjsonSink, NdjsonSink]:
    settings = CollectorSettings(data_dir=root, write_keys=(SecretStr("k"),))
    events = NdjsonSink(root / "events", fsync="always")
    rejected = NdjsonSink(root / "rejected", fsync="always")
    return Ingestor(settings, events, rejected, Deduplicator(60, 10_000)), events, rejected


def request(ingest: Ingestor, n: int, at: datetime) -> Prepared:
    batch = [
        {"type": "track", "messageId": f"m{n}-{i}", "userId": f"u{i}", "event": "E"}
        for i in range(3)
    ]
    batch.append({"type": "track", "messageId": f"bad{n}", "userId": "u"})  # no event name
    return ingest.prepare(Envelope(batch), at)


def lines(root: Path) -> dict[str, list[str]]:
    """messageIds per partition directory (``dt=.../hr=...``) under ``root``."""
    out: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.ndjson")):
        key = f"{path.parent.parent.name}/{path.parent.name}"
        for line in path.read_bytes().splitlines():
            doc = orjson.loads(line)
            out.setdefault(key, []).append(doc.get("messageId") or doc["event"]["messageId"])
    return out


def test_requests_of_two_hours_go_to_their_own_files_and_answer_in_order(tmp_path: Path) -> None:
    ingest, events, rejected = ingestor(tmp_path)
    later = T0 + timedelta(seconds=1)  # the next hour
    prepared = [request(ingest, 0, T0), request(ingest, 1, later), request(ingest, 2, T0)]
    results = ingest.commit_many(prepared)
    events.close()
    rejected.close()
    assert [r.accepted if not isinstance(r, OSError) else r for r in results] == [3, 3, 3]
    assert [r.stored[0]["messageId"] for r in results if not isinstance(r, OSError)] == [
        "m0-0",
        "m1-0",
        "m2-0",
    ]
    assert lines(tmp_path / "events") == {
        "dt=2026-11-23/hr=10": [f"m{n}-{i}" for n in (0, 2) for i in range(3)],
        "dt=2026-11-23/hr=11": [f"m1-{i}" for i in range(3)],
    }
    assert lines(tmp_path / "rejected") == {
        "dt=2026-11-23/hr=10": ["bad0", "bad2"],
        "dt=2026-11-23/hr=11": ["bad1"],
    }
    assert events.fsyncs == 2  # one per file, not one per request


def test_a_refused_write_fails_every_request_of_it_and_remembers_no_id(tmp_path: Path) -> None:
    ingest, events, rejected = ingestor(tmp_path)
    prepared = [request(ingest, 0, T0), request(ingest, 1, T0)]
    assert not (tmp_path / "events").exists()  # the sink makes its directory on first write
    (tmp_path / "events").write_text("a file where the sink needs a directory")
    results = ingest.commit_many(prepared)
    assert all(isinstance(r, OSError) for r in results)
    (tmp_path / "events").unlink()
    # Nothing was remembered: the clients' retries are stored, not answered as duplicates.
    again = [request(ingest, 0, T0), request(ingest, 1, T0)]
    assert [p.result.duplicates for p in again] == [0, 0]
    assert all(not isinstance(r, OSError) for r in ingest.commit_many(again))
    events.close()
    rejected.close()


def test_a_resend_during_a_write_that_fails_is_not_a_duplicate(tmp_path: Path) -> None:
    # The client timed out and sent again while the first copy was being written.
    ingest, events, rejected = ingestor(tmp_path)
    first = request(ingest, 0, T0)
    resend = request(ingest, 0, T0)
    assert resend.result.duplicates == 3
    (tmp_path / "events").write_text("a file where the sink needs a directory")
    assert isinstance(ingest.commit_many([first])[0], OSError)
    (tmp_path / "events").unlink()
    # Answered 200 "duplicate", the events would be stored nowhere: it fails as well.
    [answer] = ingest.commit_many([resend])
    assert isinstance(answer, OSError)
    assert "not stored; send it again" in str(answer)
    again = request(ingest, 0, T0)
    [stored] = ingest.commit_many([again])
    assert not isinstance(stored, OSError)
    assert (stored.accepted, stored.duplicates) == (3, 0)
    # When the first write succeeds, the resend is a duplicate, as ever.
    first, resend = request(ingest, 1, T0), request(ingest, 1, T0)
    results = ingest.commit_many([first]) + ingest.commit_many([resend])
    assert [(r.accepted, r.duplicates) for r in results if not isinstance(r, OSError)] == [
        (3, 0),
        (0, 3),
    ]
    events.close()
    rejected.close()
    assert lines(tmp_path / "events") == {
        "dt=2026-11-23/hr=10": [f"m{n}-{i}" for n in (0, 1) for i in range(3)]
    }


def handed_over_together(committer: Committer, ingest: Ingestor, count: int) -> list[int]:
    """Hand ``count`` requests to ``committer`` in one pass of a loop; their accepted counts."""

    async def together() -> list[int]:
        tasks = [committer.commit(request(ingest, n, T0)) for n in range(count)]
        return [result.accepted for result in await asyncio.gather(*tasks)]

    return asyncio.run(together())


def test_the_writer_thread_answers_each_waiting_request(tmp_path: Path) -> None:
    ingest, events, rejected = ingestor(tmp_path)
    committer = Committer(ingest.commit_many)

    assert handed_over_together(committer, ingest, 50) == [3] * 50
    committer.close()
    events.close()
    rejected.close()
    assert len(lines(tmp_path / "events")["dt=2026-11-23/hr=10"]) == 150
    assert events.fsyncs < 50  # requests waiting together shared a write and an fsync


def recorded(ingest: Ingestor, groups: list[int]) -> Callable[[list[Prepared]], Committed]:
    """``ingest.commit_many``, noting how many requests each group commit wrote."""

    def commit_many(batch: list[Prepared]) -> Committed:
        groups.append(len(batch))
        return ingest.commit_many(batch)

    return commit_many


def test_requests_closer_than_the_wait_share_a_group_commit(tmp_path: Path) -> None:
    # A wait longer than the longest gap the average starts from: the first group waits for
    # the second request, handed over while the writer thread already holds the first.
    ingest, events, rejected = ingestor(tmp_path)
    groups: list[int] = []
    committer = Committer(recorded(ingest, groups), wait=1.5)

    async def two() -> list[int]:
        first = asyncio.ensure_future(committer.commit(request(ingest, 0, T0)))
        await asyncio.sleep(0)  # handed over: the writer thread starts on it
        second = committer.commit(request(ingest, 1, T0))
        return [result.accepted for result in await asyncio.gather(first, second)]

    assert asyncio.run(two()) == [3, 3]
    committer.close()
    events.close()
    rejected.close()
    assert groups == [2]
    assert events.fsyncs == 1


def test_requests_further_apart_than_the_wait_are_written_at_once(tmp_path: Path) -> None:
    ingest, events, rejected = ingestor(tmp_path)
    groups: list[int] = []
    committer = Committer(recorded(ingest, groups), wait=0.5)  # below the starting average

    async def one_by_one() -> list[int]:
        return [(await committer.commit(request(ingest, n, T0))).accepted for n in range(3)]

    assert asyncio.run(one_by_one()) == [3, 3, 3]
    committer.close()
    events.close()
    rejected.close()
    assert groups == [1, 1, 1]


def test_closing_writes_a_waiting_group_without_waiting_it_out(tmp_path: Path) -> None:
    ingest, events, rejected = ingestor(tmp_path)
    groups: list[int] = []
    committer = Committer(recorded(ingest, groups), wait=3_600.0)

    async def close_while_waiting() -> int:
        answer = asyncio.ensure_future(committer.commit(request(ingest, 0, T0)))
        await asyncio.sleep(0)
        await asyncio.to_thread(committer.close)  # an hour's wait would time the test out
        return (await answer).accepted

    assert asyncio.run(close_while_waiting()) == 3
    events.close()
    rejected.close()
    assert groups == [1]


def test_a_group_of_four_is_written_without_waiting_for_more(tmp_path: Path) -> None:
    ingest, events, rejected = ingestor(tmp_path)
    groups: list[int] = []
    committer = Committer(recorded(ingest, groups), wait=3_600.0)  # the test would time out

    assert handed_over_together(committer, ingest, 4) == [3] * 4
    committer.close()
    events.close()
    rejected.close()
    assert groups == [4]


def test_groups_wait_only_when_each_costs_an_fsync(tmp_path: Path) -> None:
    def wait(**overrides: object) -> float:
        settings = CollectorSettings(data_dir=tmp_path, write_keys=(SecretStr("k"),))
        return commit_wait(settings.model_copy(update=overrides))

    assert wait() == 0.001  # the default fsync is "always"
    assert wait(commit_wait_seconds=0.004) == 0.004
    assert wait(fsync="interval", commit_wait_seconds=0.004) == 0.0
    assert wait(fsync="never") == 0.0
    assert wait(commit_wait_seconds=0) == 0.0
