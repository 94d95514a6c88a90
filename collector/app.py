"""The collector's HTTP surface: a Starlette app speaking Segment's tracking API.

Request path: authenticate -> content type -> size limits -> decode -> parse -> per-event
validation -> dedup -> NDJSON -> answer. Each step is its own module; this one only wires them
to HTTP and turns their errors into status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeykit.collector._committer import Committer
from journeykit.collector._consent_sync import consent_sync
from journeykit.collector._handover import Handover
from journeykit.collector._loop_batches import LoopBatches
from journeykit.collector.admin import AdminGate, admin_routes
from journeykit.collector.admin_dsr import dsr_routes
from journeykit.collector.admin_suppressions import suppression_routes
from journeykit.collector.body import BodyError, inflate, read_limited
from journeykit.collector.client_ip import client_ip
from journeykit.collector.compress import Compressor, finish_interrupted
from journeykit.collector.cors import TrackingCors
from journeykit.collector.decisions_api import decision_routes
from journeykit.collector.dedup import Deduplicator, DedupWindow
from journeykit.collector.dedup_peers import PeerJournal, PeerReader
from journeykit.collector.dsr.service import DsrService
from journeykit.collector.errors import HttpError, error_body
from journeykit.collector.ingest import Ingestor, parse_envelope
from journeykit.collector.ingest_paths import BATCH_ALIASES, BEACON_BATCH, SINGLE_ALIASES
from journeykit.collector.keys import KeyRing, load_pseudonymizer
from journeykit.collector.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from journeykit.collector.metrics import Metrics, multiprocess
from journeykit.collector.openapi import openapi_route
from journeykit.collector.personalize import Personalizer
from journeykit.collector.privacy import PrivacyStep
from journeykit.collector.ratelimit import TokenBucket, retry_after_header
from journeykit.collector.recovery import closed_files, recent_message_ids, repair_torn_tails
from journeykit.collector.settings import CollectorSettings
from journeykit.collector.sink import NdjsonSink
from journeykit.collector.suppression import SuppressionList
from journeykit.consent import ConsentLedger, Regime
from journeykit.consent._ledgerfile import torn_tail
from journeykit.sdk._decision import Decision
from journeykit.sdk.protocol import MESSAGE_TYPES

__all__ = ["CollectorCore", "app_from_env", "create_app"]

log = logging.getLogger("journeykit.collector")

_InlineDecisions = Handover[dict[str, list[str]], dict[str, Decision]]
_LoopDecisions = LoopBatches[dict[str, list[str]], dict[str, Decision]]
_JSON_TYPES = ("application/json", "text/plain")  # text/plain: what sendBeacon can send


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def commit_wait(settings: CollectorSettings) -> float:
    """How long a group commit may wait for more requests (``_committer``): only when each
    group costs an fsync. Without one (``fsync`` ``interval`` or ``never``) waiting added ~1 ms
    to the median latency for no CPU saved (docs/benchmarks.md, "Session 16")."""
    return settings.commit_wait_seconds if settings.fsync == "always" else 0.0


def _deduplicator(settings: CollectorSettings) -> DedupWindow:
    window, entries = settings.dedup_window_seconds, settings.dedup_max_entries
    if settings.profile_store == "redis" and settings.redis_url is not None:
        # Shared by every worker and host, so a resend that reaches another one is still caught.
        from journeykit.collector.decisions._redis_dedup import RedisDeduplicator

        return RedisDeduplicator.from_url(settings.redis_url.get_secret_value(), window)
    # With `serve --workers N` every worker commits every worker's ids (dedup_peers), and the
    # lookup sets' dearer commits, paid N times over, cost more than their cheaper lookups
    # save (4 workers: ~10% more CPU per event): the generations are probed there.
    return Deduplicator(window, entries, lookup_sets=0 if settings.dedup_peers else None)


class CollectorCore:
    """One process's collector: sinks, dedup, privacy, decisions, and the request handling."""

    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._shared_metrics = multiprocess()  # serve --workers N: see collector/metrics.py
        self.keys = KeyRing(settings.write_keys)
        # One bucket per write key, by position in the ring; None: not rate limited.
        self.buckets = [
            None if k.rate is None or k.capacity is None else TokenBucket(k.rate, k.capacity)
            for k in settings.write_keys
        ]
        self.compressor = Compressor() if settings.gzip_closed else None
        self.events = self._sink("events")
        self.rejected = self._sink("rejected")
        torn_dir = settings.data_dir / "torn"
        for name in ("events", "rejected"):
            finish_interrupted(settings.data_dir / name)
        self.torn = [
            *repair_torn_tails(settings.data_dir / "events", torn_dir / "events"),
            *repair_torn_tails(settings.data_dir / "rejected", torn_dir / "rejected"),
        ]
        dedup = self.dedup = _deduplicator(settings)
        # Workers of one `serve --workers N` share their windows (dedup_peers): the others'
        # journals are read from where they end now, before the files below are.
        self.peer_journal: PeerJournal | None = None
        self.peer_reader: PeerReader | None = None
        if settings.dedup_peers and isinstance(dedup, Deduplicator):
            self.peer_journal = PeerJournal(settings.data_dir / "dedup")
            self.peer_reader = PeerReader(
                settings.data_dir / "dedup",
                self.peer_journal.prefix,
                dedup,
                settings.dedup_window_seconds,
            )
        dedup.commit(
            recent_message_ids(
                settings.data_dir / "events",
                settings.dedup_window_seconds,
                settings.dedup_max_entries,
            )
        )
        if self.compressor is not None:
            # Files closed by a stop or a crash (repaired above), compressed in the background,
            # once the dedup window is read from them (other workers' compressors may still
            # race that read: recent_message_ids follows a file into its .gz).
            for name in ("events", "rejected"):
                for path in closed_files(settings.data_dir / name):
                    self.compressor.submit(path)
        if self.peer_reader is not None:
            self.peer_reader.start()
        self.metrics.torn_lines.inc(len(self.torn))
        pseudonymizer = load_pseudonymizer(settings)
        self.suppression = SuppressionList.open(settings.data_dir, pseudonymizer)
        ledger = ConsentLedger.open(settings.data_dir, demo_key=settings.demo_keys)
        if ledger.signer is None:
            # Hash-chained still, but nothing an auditor can check independently: say so.
            log.warning(
                "journeykit collector: the consent ledger is not signed: set "
                "JOURNEYKIT_LEDGER_SIGNING_KEY_FILE (docs/consent-ledger.md) so that "
                "checkpoints prove it was neither rewritten nor cut short"
            )
        self.privacy = PrivacyStep(
            ledger=ledger,
            pseudonymizer=pseudonymizer,
            regime=Regime(settings.consent_regime),
            suppression=self.suppression,
        )
        # With Redis: consent shared with collectors of other data dirs (None otherwise).
        self.consent_sync = consent_sync(
            settings, self.privacy.store, self.privacy.ledger.path, self.metrics
        )
        self.personalizer = Personalizer(settings, self.privacy) if settings.decisions else None
        self.ingestor = Ingestor(
            settings,
            self.events,
            self.rejected,
            dedup,
            self.privacy,
            keep_stored=self.personalizer is not None,
            journal=self.peer_journal,
        )
        self.dsr = DsrService(
            settings.data_dir,
            pseudonymizer,
            self.suppression,
            self.privacy.ledger,
            self.personalizer,
            via="api",
        )
        # Writes wait on the disk: one thread does them, every waiting request in one go.
        self._committer = Committer(self.ingestor.commit_many, commit_wait(settings))
        # The decisions in a batch's answer, the requests waiting together: on the loop with a
        # local store (SQLite), on a thread with Redis.
        self._inline: _InlineDecisions | None = None
        self._on_loop: _LoopDecisions | None = None
        if self._shared_metrics:
            self.observe_decisions()  # a worker's gauges read 0 until it first copied them

    def _sink(self, name: str) -> NdjsonSink:
        s = self.settings
        return NdjsonSink(
            s.data_dir / name,
            on_fsync=self.metrics.fsync.observe,
            fsync=s.fsync,
            fsync_interval=s.fsync_interval_seconds,
            rotate_bytes=s.rotate_bytes,
            on_closed=None if self.compressor is None else self.compressor.submit,
        )

    async def handle(
        self, request: Request, single_type: str | None, *, key_in_query: bool = False
    ) -> Response:
        """One ingestion request; ``key_in_query``: the write key may come as ``?writeKey=``
        (a beacon, which cannot set headers), after the Basic header and the body's own."""
        s = self.settings
        has_header = request.headers.get("authorization") is not None
        key_index = self.keys.find(KeyRing.from_basic_auth(request.headers.get("authorization")))
        if has_header and key_index is None:
            raise _unauthorized()
        if key_index is not None:
            self._limit(key_index, 1, take=False)  # an empty bucket refuses before the body
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in _JSON_TYPES:
            raise HttpError(415, "unsupported_media_type", "send Content-Type: application/json")
        try:
            raw = await read_limited(
                request.stream(),
                request.headers.get("content-length"),
                s.max_request_bytes,
                s.request_timeout_seconds,
            )
            body = inflate(raw, request.headers.get("content-encoding"), s.max_request_bytes)
        except BodyError as exc:
            raise HttpError(exc.status, exc.code, exc.message) from None
        envelope = parse_envelope(body, single_type, s.max_batch_events, s.max_request_bytes)
        if envelope.repaired:
            self.metrics.lone_surrogates.inc(envelope.repaired)
        if not has_header:
            written = envelope.write_key
            if written is None and key_in_query:
                written = request.query_params.get("writeKey")
            key_index = self.keys.find(written)
        if key_index is None:
            raise _unauthorized()
        # Events, not requests, are counted: a batch of 100 costs 100, invalid ones included.
        self._limit(key_index, len(envelope.events), take=True)
        write_key = s.write_keys[key_index]
        envelope.source = write_key.source
        envelope.upstream_consent = write_key.consent == "upstream"
        envelope.client_ip = client_ip(request, s.trusted_proxies)
        received_at = datetime.now(UTC)
        # Checking is CPU work and runs here; only the writes, which wait on the disk, go to a
        # thread, where concurrent requests share a group commit.
        prepared = self.ingestor.prepare(envelope, received_at, request.headers)
        # Nothing of the request is needed as objects any more (the stored events are bytes,
        # or dicts only for the decision engine): freed now, before the wait for the disk,
        # not kept alive by every waiting request. With the parsed events of 16 waiting
        # requests alive, each event cost ~20-30% more CPU (docs/benchmarks.md, "Session 11").
        events_in_batch = len(envelope.events)
        del envelope, body, raw
        try:
            result = await self._committer.commit(prepared)
        except OSError as exc:
            log.error("journeykit collector: cannot write events: %s", exc)
            raise HttpError(
                503,
                "storage_unavailable",
                "the collector cannot store events right now; retry later",
                {"Retry-After": str(s.retry_after_seconds)},
            ) from None
        m = self.metrics
        m.batch_size.observe(events_in_batch)
        m.count_events("accepted", {"stored": result.accepted})
        m.count_events("duplicate", {"seen": result.duplicates})
        m.count_events("dropped", result.dropped)
        m.count_events("dropped", {"suppressed": result.suppressed})
        if result.rejected:
            rejected = Counter(r.errors[0]["type"] if r.errors else "" for r in result.rejected)
            m.count_events("rejected", rejected)
        m.consent_records.inc(result.consent_records)
        m.count_fields_removed(result.fields_removed)
        answer = result.as_json()
        decided: dict[str, Decision] = {}
        personalizer = self.personalizer
        if personalizer is not None:
            personalizer.update(result.stored)
            if s.inline_decisions and result.stored:
                ids = personalizer.inline_ids(result.stored)
                if ids and personalizer.engine.local_store:
                    # A local read is brief: decided on the loop (with the other requests
                    # ready in the same pass), the answer no longer waits, behind every
                    # callback the busy loop has queued, for a thread's result (a lower tail
                    # under load for the same CPU: docs/benchmarks.md, "Session 7").
                    decided = await self._loop_decisions(personalizer).run(ids)
                elif ids:  # a network round trip must not stall the loop
                    decided = await self._inline_decisions(personalizer).run(ids)
        answer["decisions"] = {k: d.model_dump(mode="json") for k, d in decided.items()}
        return _json(answer)

    def _loop_decisions(self, personalizer: Personalizer) -> _LoopDecisions:
        batches = self._on_loop
        if batches is None:
            batches = self._on_loop = LoopBatches(personalizer.for_ids, personalizer.for_requests)
        return batches

    def _inline_decisions(self, personalizer: Personalizer) -> _InlineDecisions:
        inline = self._inline
        if inline is None or not inline.usable_here():
            inline = self._inline = Handover(
                personalizer.for_ids, personalizer.for_requests, name="journeykit-inline"
            )
        return inline

    def authenticate(self, request: Request, *, events: int) -> int:
        """The write key of a request without a body (HTTP Basic), its rate limit charged."""
        key_index = self.keys.find(KeyRing.from_basic_auth(request.headers.get("authorization")))
        if key_index is None:
            raise _unauthorized()
        self._limit(key_index, events, take=True)
        return key_index

    def _limit(self, key_index: int, events: int, *, take: bool) -> None:
        bucket = self.buckets[key_index]
        if bucket is None:
            return
        wait = bucket.acquire(events) if take else bucket.retry_after(events)
        if wait > 0:
            after = retry_after_header(wait)
            raise HttpError(
                429,
                "rate_limited",
                f"this write key is limited to {bucket.rate:g} events/s (burst "
                f"{bucket.capacity:,}); retry after {after} s",
                {"Retry-After": after},
            )

    def not_ready(self) -> str | None:
        """Why this process cannot store events now, or None when it can."""
        root = self.settings.data_dir
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return "the data directory cannot be created"
        if not os.access(root, os.W_OK):
            return "the data directory is not writable"
        # Permissions say little to root, and nothing of a full disk: the last write does.
        for sink in (self.events, self.rejected):
            if sink.last_error is not None:
                return f"the last write failed ({sink.last_error.strerror}); retrying on the next"
        if _torn(self.privacy.ledger.path):
            # Appends are refused until an operator moves the line aside: every consent
            # signal would be answered 503, so this collector should get no traffic.
            return "the consent ledger ends with an incomplete line: run journeykit consent repair"
        return None

    def observe_decisions(self) -> None:
        """Copy the decision engine's state into the metrics: before a scrape, and with
        ``--workers N`` also at start, every second while serving (:meth:`keep_observing`)
        and at close, since a scrape there reads every worker's last copy, not its own."""
        if self.personalizer is None:
            return
        engine = self.personalizer.engine
        self.metrics.observe_decisions(
            engine.stats, engine.pending, engine.available, engine.take_flush_seconds()
        )

    async def keep_observing(self, every: float = 1.0) -> None:
        """With ``--workers N`` and decisions on: :meth:`observe_decisions` every ``every``
        seconds, on the event loop (the engine's counters change there), until cancelled."""
        if not (self._shared_metrics and self.personalizer is not None):
            return
        while True:
            await asyncio.sleep(every)
            self.observe_decisions()

    def close(self) -> None:
        self._committer.close()  # writes already handed over finish first
        if self.personalizer is not None:
            self.personalizer.close()  # writes the profile updates still queued
        self.events.close()
        self.rejected.close()
        if self.consent_sync is not None:
            self.consent_sync.close()  # after the last ledger append: it is published too
        self.privacy.close()
        if self.peer_reader is not None:
            self.peer_reader.close()
        if self.peer_journal is not None:
            self.peer_journal.close()
        self.dedup.close()
        if self.compressor is not None:
            self.compressor.close()
        if self._shared_metrics:
            self.observe_decisions()  # the last counts, kept in the sum after this worker
        self.metrics.close()


def _torn(path: Path) -> bool:
    """Whether the ledger ends without a line end (a writer killed mid-append)."""
    try:
        with path.open("rb") as handle:
            fd = handle.fileno()
            return torn_tail(fd, os.fstat(fd).st_size) is not None
    except OSError:  # missing
        return False


def _unauthorized() -> HttpError:
    return HttpError(
        401,
        "unauthorized",
        "the write key is missing or wrong",
        {"WWW-Authenticate": 'Basic realm="journeykit"'},
    )


def create_app(settings: CollectorSettings) -> Starlette:
    """Build the collector ASGI app for ``settings``; files are closed at lifespan shutdown."""
    collector = CollectorCore(settings)

    async def ingest(request: Request, type_: str | None, key_in_query: bool = False) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await collector.handle(request, type_, key_in_query=key_in_query)
            status = response.status_code
            return response
        except HttpError as exc:
            status = exc.status
            raise
        finally:
            collector.metrics.count_request(status, time.perf_counter() - started)

    async def batch(request: Request) -> Response:
        return await ingest(request, None)

    async def beacon(request: Request) -> Response:
        return await ingest(request, None, key_in_query=True)

    def single(type_: str) -> Any:
        async def endpoint(request: Request) -> Response:
            return await ingest(request, type_)

        endpoint.__name__ = type_
        return endpoint

    async def healthz(request: Request) -> Response:
        return _json({"ok": True})

    async def metrics(request: Request) -> Response:
        collector.observe_decisions()
        return Response(collector.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def readyz(request: Request) -> Response:
        reason = collector.not_ready()
        if reason is None:
            return _json({"ok": True})
        return _json(error_body("not_ready", reason), 503)

    async def http_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, HttpError):  # registered for HttpError only
            return await server_error(request, exc)
        return _json(error_body(exc.code, exc.message), exc.status, exc.headers)

    async def no_route(request: Request, exc: Exception) -> Response:
        # Starlette's own answers are plain text: every refusal says why in the same JSON.
        if isinstance(exc, StarletteHTTPException) and exc.status_code == 405:
            body = error_body("method_not_allowed", f"{request.method} is not served here")
            return _json(body, 405, dict(exc.headers or {}))
        return _json(error_body("not_found", "no endpoint at this path"), 404)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("journeykit collector: unhandled error", exc_info=exc)
        return _json(error_body("internal_error", "internal error"), 500)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        observing = asyncio.get_running_loop().create_task(collector.keep_observing())
        try:
            yield
        finally:
            observing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await observing
            collector.close()

    routes = [Route("/v1/batch", batch, methods=["POST"])]
    routes += [Route(f"/v1/{t}", single(t), methods=["POST"]) for t in MESSAGE_TYPES]
    # Other clients' paths for the same endpoints (ingest_paths: a missing one is a 404,
    # which every client takes as final).
    routes += [Route(path, batch, methods=["POST"]) for path in BATCH_ALIASES]
    routes += [Route(path, single(t), methods=["POST"]) for path, t in SINGLE_ALIASES.items()]
    routes += [Route(BEACON_BATCH, beacon, methods=["POST"])]
    routes += decision_routes()
    routes += [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
    routes += admin_routes() + suppression_routes() + dsr_routes()
    routes += [openapi_route(settings)]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HttpError: http_error,
            404: no_route,
            405: no_route,
            Exception: server_error,
        },
    )
    app.state.collector = collector
    app.state.admin = AdminGate(settings, collector.keys)
    app.state.suppression = collector.suppression
    app.state.dsr = collector.dsr
    if settings.cors_origins:
        app.add_middleware(TrackingCors, origins=settings.cors_origins)
    return app


def app_from_env() -> Starlette:
    """uvicorn factory for ``serve --workers N``: settings from ``JOURNEYKIT__SETTINGS_JSON``."""
    from journeykit.collector._tuning import tune_for_serving
    from journeykit.collector.config import settings_from_env

    app = create_app(settings_from_env())
    tune_for_serving()
    return app
