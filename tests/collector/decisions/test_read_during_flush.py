"""Reads while this process flushes: they do not wait for the fold, and count every event once.

A flush folds the queue inside the store's write transaction, then writes and commits; its
events leave the queue only after the commit. A read in between sees the documents as they
were before the flush plus the whole queue, so nothing is missed or counted twice, and it does
not wait for the fold (tens of milliseconds for a full queue on the collector).
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor

import pytest
from decisions_helpers import Clock, EngineFactory, view

from journeykit.collector.decisions import DecisionEngine


@pytest.fixture
def mode() -> str:
    return "queued"  # written only by the flushes the tests run


def _views(engine: DecisionEngine, subject: str) -> int:
    profile = engine.profile(subject)
    return 0 if profile is None else int(profile.get("views", 0))


def test_a_read_during_a_flush_does_not_wait_for_its_fold(
    make_engine: EngineFactory, clock: Clock
) -> None:
    folding, release = threading.Event(), threading.Event()
    hold = threading.Event()

    def suppressed(ids: Collection[str]) -> Collection[str]:
        # Asked inside the flush's write transaction, before its fold: a flush held mid-way.
        if hold.is_set():
            folding.set()
            release.wait(60)
        return ()

    engine = make_engine(suppressed=suppressed)
    engine.update([view("u", "p1", clock.now)])
    assert engine.flush()
    engine.update([view("u", "p2", clock.now), view("u", "p3", clock.now)])
    hold.set()
    with ThreadPoolExecutor(2) as pool:
        flushing = pool.submit(engine.flush)
        assert folding.wait(30)
        # Answered while the flush holds the store's write transaction (a bound, not a timing:
        # a read that waited for the flush would only come back after release below).
        assert pool.submit(_views, engine, "u").result(timeout=30) == 3
        engine.update([view("u", "p4", clock.now)])
        assert _views(engine, "u") == 4
        release.set()
        assert flushing.result(timeout=30)
    assert engine.pending == 1  # the event queued during the flush waits for the next one
    assert _views(engine, "u") == 4
    assert engine.flush()
    assert _views(engine, "u") == 4


def test_reads_racing_flushes_count_every_event_once(
    make_engine: EngineFactory, clock: Clock
) -> None:
    engine = make_engine()
    started = done = 0
    stop = threading.Event()
    wrong: list[tuple[int, int, int]] = []

    def read() -> None:
        while not stop.is_set():
            low = done
            seen = _views(engine, "u")
            high = started
            if not low <= seen <= high:
                wrong.append((low, seen, high))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(300):
            started += 1
            engine.update([view("u", f"p{i % 7}", clock.now)])
            done += 1
            if i % 3 == 0:
                assert engine.flush()
    finally:
        stop.set()
        reader.join(30)
    assert wrong == []
    assert engine.flush()
    assert _views(engine, "u") == 300
