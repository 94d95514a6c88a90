"""Prometheus metrics of the collector: what came in, what became of it, how fast.

Every outcome the collector answers with is counted here too, by reason, so an operator sees
drops without reading responses: ``journeykit_events_total{outcome, reason}`` adds up to
every event received. Each app has its own registry (no module-level globals), so tests and
several apps in one process do not mix their counts.

With ``serve --workers N`` the workers share one port, and a scrape reaches whichever the
kernel picks: each answered with its own counts, so successive scrapes went backwards.
There ``prometheus_client``'s multiprocess mode is on (:data:`MULTIPROC_ENV`, set by the
command before anything imports ``prometheus_client``): every process keeps its values in
files under ``<data-dir>/metrics/``, and any worker's scrape answers the sum of all of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as _values
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "MULTIPROC_ENV", "Metrics", "multiprocess"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""``prometheus_client``'s switch: read when it is imported, so set before that or never."""


def _forget_dead_workers() -> None:
    """Take the live gauges of workers that died without closing (SIGKILL) out of the sums.

    uvicorn replaces such a worker; its last ``journeykit_decisions_store_available`` (a
    minimum over live workers) would otherwise hold the sum at that value for good.
    """
    from prometheus_client.multiprocess import mark_process_dead

    from journeykit.collector.compress import pid_alive

    root = Path(os.environ[MULTIPROC_ENV])
    for path in root.glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            mark_process_dead(int(pid))  # type: ignore[no-untyped-call]


def multiprocess() -> bool:
    """Whether this process's metrics live in the shared directory (``serve --workers N``)."""
    return _values.ValueClass is not _values.MutexValue and bool(os.environ.get(MULTIPROC_ENV))


CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The collector's counters and histograms, and their exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._extra: list[Any] = []
        self._children: dict[tuple[object, ...], Any] = {}
        if multiprocess():
            _forget_dead_workers()
        self.events = Counter(
            "journeykit_events",
            "Events received, by outcome (accepted, duplicate, rejected, dropped) and reason.",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.requests = Counter(
            "journeykit_requests",
            "Ingestion requests answered, by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "journeykit_request_seconds",
            "Time to answer an ingestion request.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "journeykit_batch_events",
            "Events per ingestion request.",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
            registry=self.registry,
        )
        self.fsync = Histogram(
            "journeykit_sink_fsync_seconds",
            "Time of one fsync of an NDJSON file (one per group commit).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=self.registry,
        )
        self.consent_records = Counter(
            "journeykit_consent_records",
            "Consent changes appended to the consent ledger.",
            registry=self.registry,
        )
        self.fields_removed = Counter(
            "journeykit_fields_removed",
            "Personal fields removed because they could not be pseudonymized, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.lone_surrogates = Counter(
            "journeykit_lone_surrogates_replaced",
            "Lone UTF-16 surrogate escapes in request bodies, stored as U+FFFD.",
            registry=self.registry,
        )
        self.torn_lines = Counter(
            "journeykit_torn_lines_repaired",
            "Partial last lines cut off NDJSON files at start (kept under torn/).",
            registry=self.registry,
        )
        self.decision_stats = Gauge(
            "journeykit_decisions",
            "The decision engine's counters since start, by name (events_queued, flushes, "
            "flush_errors, decisions_granted, ...), as a gauge read at each scrape.",
            ["name"],
            registry=self.registry,
            multiprocess_mode="sum",  # each worker's own counts, added up
        )
        # Created at the engine's first copy (see _live_gauges), not here.
        self._live: tuple[Gauge, Gauge] | None = None
        self.decision_flush = Histogram(
            "journeykit_decisions_flush_seconds",
            "Time of one profile flush (fold and write). A full queue is flushed by the request "
            "that filled it: the event loop pauses that long.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=self.registry,
        )

    def observe_decisions(
        self,
        stats: Mapping[str, int],
        pending: int,
        available: bool,
        flush_seconds: Iterable[float] = (),
    ) -> None:
        """Copy the decision engine's state in, just before a scrape renders it."""
        for seconds in flush_seconds:
            self.decision_flush.observe(seconds)
        for name, value in stats.items():
            self.decision_stats.labels(name).set(value)
        pending_gauge, store_up = self._live_gauges()
        pending_gauge.set(pending)
        store_up.set(1 if available else 0)

    def _live_gauges(self) -> tuple[Gauge, Gauge]:
        # With --workers N an unlabelled gauge's value is in the shared files, at 0, from the
        # moment it is created: created with the rest, a worker still starting (reading its
        # dedup window, opening its store) held every scrape's minimum at 0, "store down".
        # Created at the first copy, a worker joins the minimum with its store's real state.
        if self._live is None:
            self._live = (
                Gauge(
                    "journeykit_decisions_pending_events",
                    "Stored events queued for profiles and not yet written to the profile store.",
                    registry=self.registry,
                    multiprocess_mode="livesum",
                ),
                Gauge(
                    "journeykit_decisions_store_available",
                    "1 while the profile store answers, 0 while decisions report 'unavailable'.",
                    registry=self.registry,
                    multiprocess_mode="livemin",  # 0 while any worker's store is down
                ),
            )
        return self._live

    def count_events(self, outcome: str, reasons: Mapping[str, int]) -> None:
        for reason, n in reasons.items():
            if n:
                self._child(self.events, outcome, reason).inc(n)

    def count_fields_removed(self, reasons: Mapping[str, int]) -> None:
        for reason, n in reasons.items():
            self._child(self.fields_removed, reason).inc(n)

    def count_request(self, status: int, seconds: float) -> None:
        """An ingestion request answered with ``status`` after ``seconds``."""
        self._child(self.requests, str(status)).inc()
        self.latency.observe(seconds)

    def _child(self, metric: Counter, *labels: str) -> Any:
        # ``labels()`` checks and locks on every call, a few microseconds, several times per
        # request; a label set's child never changes, so it is looked up once.
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> bytes:
        """The exposition: this process's registry, or every worker's summed (see the module)."""
        if not multiprocess():
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        for extra in self._extra:  # state read at scrape time (the consent sync's): this worker's
            registry.register(extra)
        return generate_latest(registry)

    def register(self, collector: Any) -> None:
        """A collector whose state is read at each scrape (not counted into files)."""
        self.registry.register(collector)
        self._extra.append(collector)

    def close(self) -> None:
        """This process's live gauges leave the sum (``livesum``, ``livemin``) when it stops."""
        if multiprocess():
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
