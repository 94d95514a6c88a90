"""The SDK client against exact network behaviours, through httpx.MockTransport."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from helpers import WIRE, Recorder, load_json
from pydantic import ValidationError

from journeykit.sdk import Client, Drop, InvalidMessage, MessageTooLarge
from journeykit.sdk._transport import _parse_retry_after
from journeykit.sdk.protocol import BATCH_ADAPTER, MAX_EVENT_BYTES

Handler = Callable[[httpx.Request], httpx.Response]


# Delivery tests: no consent state and no pseudonymization (tests/sdk/test_consent_gate.py).
DELIVERY_ONLY: dict[str, Any] = {"consent_regime": "opt_out", "pseudonymize": False}


def make_client(recorder: Recorder, **options: Any) -> Client:
    options.setdefault("max_backoff", 0.05)
    return Client("wk-test", transport=httpx.MockTransport(recorder), **DELIVERY_ONLY, **options)


def test_events_arrive_in_order_as_valid_batches() -> None:
    recorder = Recorder()
    with make_client(recorder, batch_size=10, max_backlog_batch=10) as client:
        for i in range(25):
            assert client.track("u1", "Step", {"i": i})
        assert client.flush(timeout=5)
    assert [e["properties"]["i"] for e in recorder.events] == list(range(25))
    assert len(recorder.bodies) >= 3
    for body in recorder.bodies:
        BATCH_ADAPTER.validate_python(body)
        assert len(body["batch"]) <= 10
    assert client.stats().sent == 25
    assert client.stats().dropped_total == 0


def test_request_shape_auth_gzip_and_user_agent() -> None:
    recorder = Recorder()
    with make_client(recorder) as client:
        client.identify("u1", {"plan": "pro"})
        client.flush(timeout=5)
    request = recorder.requests[0]
    assert request.url.path == "/v1/batch"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("journeykit-python/")
    user = base64.b64decode(request.headers["authorization"].split()[1]).decode()
    assert user == "wk-test:"
    assert "sentAt" in recorder.bodies[0]


def test_wire_snapshot_matches_the_shared_fixture() -> None:
    recorder = Recorder()
    ts = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
    with make_client(recorder) as client:
        client.identify("u1", {"plan": "pro"}, timestamp=ts, message_id="m-1")
        client.track(
            "u1",
            "Product Viewed",
            {"product_id": "p1", "price": 19.9},
            timestamp=ts,
            message_id="m-2",
        )
        client.page(
            None,
            "Home",
            {"path": "/"},
            anonymous_id="anon-1",
            category="Landing",
            timestamp=ts,
            message_id="m-3",
        )
        client.screen("u1", "Cart", timestamp=ts, message_id="m-4")
        client.group("u1", "g1", {"name": "Initech"}, timestamp=ts, message_id="m-5")
        client.alias("anon-1", "u1", timestamp=ts, message_id="m-6")
    expected = load_json(WIRE / "batches" / "journeykit_sdk.json")
    got = recorder.bodies[0]
    for message in got["batch"]:
        message["context"]["library"]["version"] = "<version>"
    assert got["batch"] == expected["batch"]


def test_server_errors_are_retried_until_success() -> None:
    recorder = Recorder(httpx.Response(500), httpx.Response(503), httpx.Response(200))
    with make_client(recorder) as client:
        client.track("u1", "E")
        assert client.flush(timeout=10)
    assert len(recorder.requests) == 3
    stats = client.stats()
    assert (stats.sent, stats.retries, stats.requests) == (1, 2, 3)
    assert stats.dropped_total == 0


def test_network_errors_and_408_429_are_retried() -> None:
    recorder = Recorder(
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(408),
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(200),
    )
    with make_client(recorder) as client:
        client.track("u1", "E")
        assert client.flush(timeout=10)
    assert len(recorder.requests) == 5
    assert client.stats().sent == 1


def test_retry_after_is_honoured_up_to_its_cap() -> None:
    # Retry-After asks for an hour; the cap of 0.2 s bounds the wait, so this finishes.
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "3600"}), httpx.Response(200))
    with make_client(recorder, max_retry_after=0.2) as client:
        client.track("u1", "E")
        assert client.flush(timeout=10)
    assert client.stats().sent == 1


def test_a_retry_after_past_the_budget_holds_the_next_batches() -> None:
    # The first batch is given up (60 s is past its budget), but the collector is not asked
    # again before those 60 s: the next batch waits, and is reported if shutdown comes first.
    drops: list[Drop] = []
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "60"}))
    client = make_client(recorder, retry_budget=1.0, on_drop=drops.append)
    try:
        client.track("u1", "First")
        assert client.flush(timeout=5)
        client.track("u1", "Second")
        assert not client.flush(timeout=0.5)
    finally:
        assert not client.shutdown(timeout=0.5)
    assert len(recorder.requests) == 1
    assert [d.reason for d in drops] == ["retries_exhausted", "shutdown"]
    assert "asked to wait 60 s" in (drops[0].detail or "")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_retry_after_no_clock_can_keep_is_ignored(value: str) -> None:
    # float() reads these: a NaN wait would skip every backoff and never end a spool's pause.
    assert _parse_retry_after(value, 300.0) is None
    assert _parse_retry_after("2.5", 300.0) == 2.5


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_other_client_errors_give_up_at_once_and_report(status: int) -> None:
    drops: list[Drop] = []
    recorder = Recorder(httpx.Response(status, text="nope"))
    with make_client(recorder, on_drop=drops.append) as client:
        result = client.track("u1", "E")
        assert client.flush(timeout=5)
    assert len(recorder.requests) == 1
    assert [d.reason for d in drops] == ["http_error"]
    assert drops[0].message_id == result.message_id
    assert str(status) in drops[0].detail
    assert client.stats().dropped == {"http_error": 1}


def test_retries_are_bounded_by_attempts() -> None:
    recorder = Recorder(*[httpx.Response(500)] * 10)
    with make_client(recorder, max_retries=2) as client:
        client.track("u1", "E")
        client.track("u1", "F")
        assert client.flush(timeout=10)
    assert len(recorder.requests) == 3
    assert client.stats().dropped == {"retries_exhausted": 2}


def test_per_event_rejections_are_counted_and_reported() -> None:
    answer = {
        "ok": True,
        "accepted": 1,
        "rejected": [
            {"index": 1, "messageId": "x", "errors": [{"path": "event", "message": "bad"}]}
        ],
    }
    drops: list[Drop] = []
    recorder = Recorder(httpx.Response(200, json=answer))
    with make_client(recorder, on_drop=drops.append) as client:
        client.track("u1", "Good")
        bad = client.track("u1", "Bad")
        client.flush(timeout=5)
    assert [(d.reason, d.message_id) for d in drops] == [("rejected", bad.message_id)]
    assert "event: bad" in drops[0].detail
    assert client.stats().sent == 1


def test_invalid_calls_are_dropped_with_a_reason_not_raised() -> None:
    drops: list[Drop] = []
    recorder = Recorder()
    with make_client(recorder, on_drop=drops.append) as client:
        assert not client.track(None, "E")
        assert not client.track("u1", "")
        assert not client.track("u1", "E", {"when": object()})
        assert not client.track("u1", "E", ["not", "a", "mapping"])  # type: ignore[arg-type]
        assert not client.alias("", "u1")
        result = client.track("u1", "E", {"blob": "x" * MAX_EVENT_BYTES})
    assert result.reason == "too_large"
    assert [d.reason for d in drops] == ["invalid"] * 5 + ["too_large"]
    assert client.stats().dropped == {"invalid": 5, "too_large": 1}
    assert recorder.requests == []


def test_strict_mode_raises_at_the_call_site() -> None:
    with make_client(Recorder(), strict=True) as client:
        with pytest.raises(InvalidMessage, match="user_id or an anonymous_id"):
            client.track(None, "E")
        with pytest.raises(MessageTooLarge):
            client.track("u1", "E", {"blob": "x" * MAX_EVENT_BYTES})


def test_full_queue_drops_and_counts() -> None:
    gate = threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        gate.wait(10)
        return httpx.Response(200)

    drops: list[Drop] = []
    client = Client(
        "k",
        transport=httpx.MockTransport(slow),
        max_queue_size=5,
        batch_size=1,
        on_drop=drops.append,
        **DELIVERY_ONLY,
    )
    results = [client.track("u1", "E", {"i": i}) for i in range(20)]
    refused = [r for r in results if not r]
    assert refused
    assert all(r.reason == "queue_full" for r in refused)
    assert client.stats().dropped["queue_full"] == len(refused)
    gate.set()
    assert client.shutdown(timeout=10)
    stats = client.stats()
    assert stats.sent + stats.dropped_total == 20
    assert stats.pending == 0


def test_flush_times_out_and_shutdown_reports_what_is_left() -> None:
    gate = threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        gate.wait(10)
        return httpx.Response(200)

    drops: list[Drop] = []
    client = Client(
        "k",
        transport=httpx.MockTransport(hang),
        batch_size=1,
        max_backlog_batch=1,  # the first event hangs, the other two stay queued
        on_drop=drops.append,
        **DELIVERY_ONLY,
    )
    for i in range(3):
        client.track("u1", "E", {"i": i})
    assert client.flush(timeout=0.2) is False
    assert client.shutdown(timeout=0.2) is False
    gate.set()
    stats = client.stats()
    assert stats.queued == 3
    assert stats.dropped.get("shutdown", 0) >= 1
    assert {d.reason for d in drops} == {"shutdown"}


def test_shutdown_settles_the_batch_of_a_request_that_outlives_it() -> None:
    """A request still hanging when shutdown's time is up: its events are reported at once.

    Before, they stayed pending on the daemon thread and vanished at exit, unreported. The
    outcome the request gets later is not counted a second time.
    """
    gate = threading.Event()
    requests: list[httpx.Request] = []

    def hang(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        gate.wait(10)
        return httpx.Response(200)

    drops: list[Drop] = []
    before = set(threading.enumerate())
    client = Client(
        "k",
        transport=httpx.MockTransport(hang),
        batch_size=1,
        max_backlog_batch=1,
        on_drop=drops.append,
        **DELIVERY_ONLY,
    )
    for i in range(3):
        client.track("u1", "E", {"i": i})
    (worker,) = set(threading.enumerate()) - before
    assert client.shutdown(timeout=0.3) is False
    stats = client.stats()
    assert (stats.pending, stats.dropped) == (0, {"shutdown": 3})
    assert "in flight" in drops[0].detail
    assert [d.detail for d in drops[1:]] == ["still queued when shutdown gave up waiting"] * 2
    gate.set()
    worker.join(10)  # the request ends now; its 200 must not count as well
    assert not worker.is_alive()
    assert len(requests) == 1
    assert client.stats().sent == 0
    assert client.stats().dropped == {"shutdown": 3}


def test_calls_after_shutdown_are_refused_and_counted() -> None:
    client = make_client(Recorder())
    client.shutdown()
    result = client.track("u1", "E")
    assert not result
    assert result.reason == "shutdown"
    assert client.stats().dropped == {"shutdown": 1}
    assert client.shutdown() is True  # idempotent


def test_a_broken_on_drop_hook_does_not_break_tracking() -> None:
    def explode(drop: Drop) -> None:
        raise RuntimeError("hook bug")

    with make_client(Recorder(), on_drop=explode) as client:
        assert not client.track(None, "E")
        assert client.track("u1", "E")


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="batch_size"):
        Client("k", batch_size=0)
    with pytest.raises(ValidationError, match="host"):
        Client("k", host="ftp://example")
    with pytest.raises(ValidationError, match="extra"):
        Client("k", flush_intervall=1.0)
    with pytest.raises(ValidationError, match="write_key"):
        Client("  ")


def test_the_write_key_is_not_in_reprs() -> None:
    client = Client("super-secret-write-key", **DELIVERY_ONLY)
    assert "super-secret-write-key" not in repr(client.settings)
    assert "super-secret-write-key" not in str(client.settings)
    client.shutdown()


class SlowRecorder(Recorder):
    """A collector answering in 20 ms: with steady traffic, the queue is never empty."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        time.sleep(0.02)
        return super().__call__(request)


def test_flush_waits_for_what_was_tracked_before_it_not_after() -> None:
    # Other threads keep tracking: the queue is never empty, yet flush must end, once every
    # event tracked before the call is delivered.
    recorder = SlowRecorder()
    stop = threading.Event()
    with make_client(recorder, flush_interval=0.01) as client:
        before = [client.track("u1", "Before").message_id for _ in range(10)]

        def produce() -> None:
            while not stop.is_set():
                client.track("u2", "After")
                time.sleep(0.001)

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            time.sleep(0.05)  # the traffic is flowing
            assert client.flush(timeout=5)
            delivered = {e["messageId"] for e in recorder.events}
            assert set(before) <= delivered
        finally:
            stop.set()
            producer.join()


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda c: c.track("u" * 1025, "E"), "user_id is 1,025 characters"),
        (lambda c: c.track("u1", "E" * 1025), "event is 1,025 characters"),
        (lambda c: c.page("u1", "N" * 1025), "name is 1,025 characters"),
        (lambda c: c.group("u1", "g" * 1025), "groupId is 1,025 characters"),
        (lambda c: c.track("u1", "E", {"rating": float("nan")}), "NaN or infinite"),
        (lambda c: c.track("u1", "E", {"amount": Decimal("1E+400")}), "not JSON serializable"),
        (lambda c: c.track("u1", "E", {"x": [float("inf")]}, message_id="m1"), "NaN or inf"),
    ],
)
def test_what_the_collector_would_refuse_is_refused_at_the_call(call: Any, says: str) -> None:
    # Accepted here and rejected there (or stored as null), it would be lost out of sight.
    recorder = Recorder()
    drops: list[Drop] = []
    with make_client(recorder, on_drop=drops.append) as client:
        result = call(client)
        assert client.flush(timeout=5)
    assert (bool(result), result.reason) == (False, "invalid")
    assert says in (result.detail or "")
    assert recorder.requests == []
    assert client.track is not None  # the client goes on
