"""Prometheus metrics of one collector process: what came in, what became of it, how fast.

Every outcome the collector answers with is counted here too, by reason, so an operator sees
drops without reading responses: ``journeykit_events_total{outcome, reason}`` adds up to
every event received. Each app has its own registry (no module-level globals), so tests and
several apps in one process do not mix their counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The collector's counters and histograms, and their exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
        )
        self.decision_pending = Gauge(
            "journeykit_decisions_pending_events",
            "Stored events queued for profiles and not yet written to the profile store.",
            registry=self.registry,
        )
        self.decision_store_up = Gauge(
            "journeykit_decisions_store_available",
            "1 while the profile store answers, 0 while decisions report 'unavailable'.",
            registry=self.registry,
        )
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
        self.decision_pending.set(pending)
        self.decision_store_up.set(1 if available else 0)

    def count_events(self, outcome: str, reasons: Mapping[str, int]) -> None:
        for reason, n in reasons.items():
            if n:
                self.events.labels(outcome, reason).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
