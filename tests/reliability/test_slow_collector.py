"""A collector that does not answer: the app never waits, SDK memory stays bounded, drops counted.

The "collector" is a tiny HTTP server on 127.0.0.1 that reads each request and then holds its
answer until the test lets it go: from the SDK's side, a collector that has stopped answering
(overloaded, a stalled proxy). While it holds, the app tracks far more events than the queue
holds; every call must return, the queue must stay at its bound, the memory the SDK holds must
not grow with the events tracked, and every event it could not keep must be dropped with reason
``queue_full``, counted and passed to ``on_drop``. Once the collector answers again, everything
queued is delivered.
"""

from __future__ import annotations

import gzip
import json
import threading
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from helpers import PSEUDONYM_KEY, WRITE_KEY

from journeykit.sdk import Client, Drop

QUEUE = 200
EVENTS = 20_000  # 100 times the queue


class _HeldCollector(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.release = threading.Event()
        self.received: list[str] = []
        self.requests = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _HeldCollector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with self.server.lock:
            self.server.requests += 1
        # Bounded, so a broken test cannot hang: the test releases long before.
        self.server.release.wait(120)
        with self.server.lock:
            self.server.received += [event["messageId"] for event in json.loads(body)["batch"]]
        answer = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what it needs from the server's fields."""


@contextmanager
def _held_collector() -> Iterator[_HeldCollector]:
    server = _HeldCollector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_collector_that_holds_its_answers_never_blocks_the_app_nor_grows_its_memory() -> None:
    drops: Counter[str] = Counter()  # a Counter, not a list: the hook itself must not grow

    def on_drop(drop: Drop) -> None:
        drops[drop.reason] += 1

    with _held_collector() as collector:
        client = Client(
            WRITE_KEY,
            host=collector.url,
            pseudonym_key=PSEUDONYM_KEY,
            consent_regime="opt_out",
            on_drop=on_drop,
            max_queue_size=QUEUE,
            batch_size=50,
            flush_interval=0.01,
            timeout=300,  # the held request never times out within the test
        )
        results: Counter[str] = Counter()
        queued_ids: list[str] = []

        def app(count: int) -> None:
            for i in range(count):
                result = client.track(f"user-{i % 100}", "Page Read", {"i": i, "pad": "x" * 200})
                if result.queued:
                    queued_ids.append(str(result.message_id))
                results[result.reason or "queued"] += 1

        # Fill the queue while the first request hangs, then measure what tracking EVENTS
        # more costs in memory. The app runs on its own thread and must finish while the
        # collector still holds its answer: a call that waited for the network never would.
        app(QUEUE * 3)
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            thread = threading.Thread(target=app, args=(EVENTS,))
            thread.start()
            thread.join(120)
            assert not thread.is_alive(), "tracking blocked on a collector that does not answer"
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert not collector.release.is_set()
        stats = client.stats()
        assert collector.requests >= 1  # the worker is stuck in a request, as intended

        # Memory: EVENTS queued events would be several MB; held in the bounded queue, the
        # growth is what a few hundred events and the bookkeeping cost (results, ids).
        grown = after - before
        assert grown < 1_000_000, f"tracking {EVENTS} events grew traced memory by {grown} B"
        # The queue, plus the one batch in flight that the worker took out of it.
        assert stats.pending <= 2 * QUEUE
        total = QUEUE * 3 + EVENTS
        assert stats.queued + stats.dropped["queue_full"] == total
        assert stats.dropped["queue_full"] >= EVENTS - QUEUE
        assert drops == Counter({"queue_full": stats.dropped["queue_full"]})
        assert results["queue_full"] == stats.dropped["queue_full"]
        assert results["queued"] == stats.queued == len(queued_ids)

        # The collector answers again: everything queued is delivered, nothing more dropped.
        collector.release.set()
        assert client.flush(timeout=60)
        assert client.shutdown(timeout=10)
        final = client.stats()
    assert final.sent == final.queued
    assert dict(final.dropped) == {"queue_full": stats.dropped["queue_full"]}
    assert sorted(collector.received) == sorted(queued_ids)
