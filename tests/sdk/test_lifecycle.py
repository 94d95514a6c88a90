"""The client's lifecycle: fork, sync_mode, send=False, and no thread or socket left behind."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import PSEUDONYM_KEY, Recorder, RunningCollector, in_forked_child

from journeykit.sdk import AsyncClient, Client, Drop

DELIVERY_ONLY: dict[str, Any] = {"consent_regime": "opt_out", "pseudonymize": False}


def _wait_until(condition: Any, seconds: float = 30.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass (a liveness bound, not a timing)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _new_threads(before: set[threading.Thread]) -> set[threading.Thread]:
    """Threads alive now that were not before (other tests' threads may end meanwhile)."""
    return set(threading.enumerate()) - before


# -- fork ----------------------------------------------------------------------------------------


def _child(client: Client, write_fd: int) -> None:
    """Runs in the forked child: track, shut down, report on the pipe, leave without teardown."""
    status = 1
    try:
        ids = [client.track("child", "In Child", {"i": i}).message_id for i in range(30)]
        delivered = client.shutdown(timeout=30)
        stats = client.stats()
        report = {"ids": ids, "delivered": delivered, "sent": stats.sent, "queued": stats.queued}
        os.write(write_fd, json.dumps(report).encode())
        status = 0
    finally:
        os._exit(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("used_before_fork", [True, False], ids=["worker-running", "preloaded"])
def test_parent_and_forked_child_each_deliver_their_own_events_once(
    collector: RunningCollector, used_before_fork: bool
) -> None:
    # A long flush interval keeps the parent's events queued across the fork: if the child
    # inherited them, it would send them too.
    client = Client(
        collector.key, host=collector.url, flush_interval=60, batch_size=500, **DELIVERY_ONLY
    )
    before = []
    if used_before_fork:
        before = [client.track("parent", "Before", {"i": i}).message_id for i in range(20)]
        assert client.stats().pending == 20
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(client, write_fd)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        raw = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child = json.loads(raw)
    assert child["delivered"] is True
    assert child["queued"] == child["sent"] == 30  # its own events only, counted from zero

    after = [client.track("parent", "After", {"i": i}).message_id for i in range(10)]
    assert client.shutdown(timeout=30)
    parent_sent = client.stats().sent
    assert parent_sent == len(before) + len(after)

    stored = [e["messageId"] for e in collector.events]
    expected = set(before) | set(after) | set(child["ids"])
    assert sorted(stored) == sorted(expected)  # every event stored, none twice
    # The collector drops resent messageIds, so count what was sent: nothing went twice.
    assert parent_sent + child["sent"] == len(expected)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_an_async_client_in_a_forked_child_sends_its_own_events_only(
    collector: RunningCollector,
) -> None:
    # Queued outside any loop before the fork (as at import): the parent's to send, not the
    # child's as well.
    client = AsyncClient(collector.key, host=collector.url, **DELIVERY_ONLY)
    before = [client.track("parent", "Before", {"i": i}).message_id for i in range(5)]

    async def child() -> dict[str, Any]:
        ids = [client.track("child", "In Child").message_id for _ in range(3)]
        await client.shutdown(timeout=30)
        return {"ids": ids, "sent": client.stats().sent}

    report = in_forked_child(lambda: asyncio.run(child()))
    assert report["sent"] == 3  # its own, counted from zero

    async def parent() -> None:
        await client.shutdown(timeout=30)

    asyncio.run(parent())
    assert client.stats().sent == 5
    stored = sorted(e["messageId"] for e in collector.events)
    assert stored == sorted([*before, *report["ids"]])


# -- sync_mode -------------------------------------------------------------------------------


def test_sync_mode_delivers_on_the_callers_thread_before_returning() -> None:
    threads: list[int] = []
    recorder = Recorder()

    def handler(request: httpx.Request) -> httpx.Response:
        threads.append(threading.get_ident())
        return recorder(request)

    before = set(threading.enumerate())
    client = Client("k", transport=httpx.MockTransport(handler), sync_mode=True, **DELIVERY_ONLY)
    for i in range(3):
        result = client.track("u1", "Step", {"i": i})
        assert result
        assert result.delivered
        assert len(recorder.events) == i + 1  # already there when the call returned
    assert not _new_threads(before)  # no worker thread
    assert set(threads) == {threading.get_ident()}
    assert client.flush(timeout=1)
    assert client.shutdown(timeout=1)
    stats = client.stats()
    assert (stats.queued, stats.sent, stats.pending, stats.requests) == (3, 3, 0, 3)
    refused = client.track("u1", "Late")
    assert not refused
    assert refused.reason == "shutdown"


def test_sync_mode_retries_like_the_worker_and_reports_give_ups() -> None:
    recorder = Recorder(
        httpx.Response(503),
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(200),
        *[httpx.Response(500)] * 3,
        httpx.Response(401, text="bad key"),
    )
    drops: list[Drop] = []
    client = Client(
        "k",
        transport=httpx.MockTransport(recorder),
        sync_mode=True,
        max_retries=2,
        max_backoff=0.05,
        on_drop=drops.append,
        **DELIVERY_ONLY,
    )
    retried = client.track("u1", "Retried")  # 503, 429, then 200
    assert retried
    assert retried.delivered
    exhausted = client.track("u1", "Exhausted")  # 500 three times
    assert not exhausted
    assert exhausted.reason == "retries_exhausted"
    assert not exhausted.delivered
    refused = client.track("u1", "Refused")  # 401: not retried
    assert not refused
    assert refused.reason == "http_error"
    assert "401" in refused.detail
    assert client.shutdown()
    stats = client.stats()
    assert (stats.queued, stats.sent, stats.retries, stats.requests) == (3, 1, 4, 7)
    assert stats.dropped == {"retries_exhausted": 1, "http_error": 1}
    assert [d.message_id for d in drops] == [exhausted.message_id, refused.message_id]


# -- send=False ------------------------------------------------------------------------------


def test_send_false_validates_gates_and_pseudonymizes_but_sends_nothing() -> None:
    recorder = Recorder()
    before = set(threading.enumerate())
    client = Client(
        "k",
        transport=httpx.MockTransport(recorder),
        send=False,
        pseudonym_key=PSEUDONYM_KEY,
    )
    assert client.track("u1", "Viewed").reason == "no_consent"  # opt-in: the gate still runs
    granted = client.consent("u1", granted=["analytics"])
    assert not granted
    assert granted.reason == "not_sent"
    assert client.consent_state("u1") is not None  # the choice was recorded all the same
    result = client.identify("u1", {"phone": "call me"})  # cannot be pseudonymized: removed
    assert not result
    assert result.reason == "not_sent"
    assert result.message_id
    assert client.track(None, "No one").reason == "invalid"
    assert client.shutdown(timeout=1)
    stats = client.stats()
    assert (stats.sent, stats.queued, stats.requests, stats.not_sent) == (0, 0, 0, 2)
    assert stats.dropped == {"no_consent": 1, "invalid": 1}
    assert stats.fields_removed == {"invalid_phone": 1}
    assert recorder.requests == []
    assert not _new_threads(before)


# -- no leaks --------------------------------------------------------------------------------


def test_a_thousand_clients_leave_no_thread_behind() -> None:
    before = set(threading.enumerate())
    recorder = Recorder()
    for i in range(1_000):
        client = Client("k", transport=httpx.MockTransport(recorder), **DELIVERY_ONLY)
        client.track("u1", "Step", {"i": i})
        assert client.shutdown(timeout=10)
    assert not _new_threads(before)
    assert sorted(e["properties"]["i"] for e in recorder.events) == list(range(1_000))


def test_clients_dropped_without_shutdown_are_collected_and_finish_their_work() -> None:
    before = set(threading.enumerate())
    recorder = Recorder()
    refs = []
    for i in range(50):
        client = Client("k", transport=httpx.MockTransport(recorder), **DELIVERY_ONLY)
        client.track("u1", "Step", {"i": i})
        refs.append(weakref.ref(client))
    assert len(_new_threads(before)) == 50
    del client
    gc.collect()
    assert all(ref() is None for ref in refs)  # no worker keeps its client alive
    assert _wait_until(lambda: not _new_threads(before))
    # Each thread delivered what its client had queued before it ended.
    assert sorted(e["properties"]["i"] for e in recorder.events) == list(range(50))


def _open_sockets() -> int:
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # closed while listing
            count += fd.readlink().name.startswith("socket:")
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_clients_against_a_real_collector_close_their_sockets(
    collector: RunningCollector,
) -> None:
    start = _open_sockets()
    for i in range(100):
        with Client(collector.key, host=collector.url, **DELIVERY_ONLY) as client:
            client.track("u1", "Step", {"i": i})
    # The collector's side of each connection closes when it reads the end of the stream.
    assert _wait_until(lambda: _open_sockets() <= start)
    assert len(collector.events) == 100


@pytest.mark.parametrize("keep", [True, False], ids=["clients-kept", "clients-collected"])
def test_interpreter_exit_waits_exit_timeout_once_whatever_the_clients(keep: bool) -> None:
    # A collector that accepts and never answers: every client's drain waits its time out.
    # One after another, ten clients held the exit ten times exit_timeout.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(100)
        port = server.getsockname()[1]
        script = textwrap.dedent(f"""
            import gc
            from journeykit.sdk import Client
            kept = []
            for i in range(10):
                c = Client("k", host="http://127.0.0.1:{port}", consent_regime="opt_out",
                           pseudonymize=False, exit_timeout=1.0, timeout=30)
                c.track("u", "E", {{}})
                if {keep}:
                    kept.append(c)
            gc.collect()
        """)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
        took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert took < 6.0, took  # a bound, not a timing: one wait of 1 s, not ten
