"""The collector's HTTP surface: a Starlette app speaking Segment's tracking API.

Request path: authenticate -> content type -> size limits -> decode -> parse -> per-event
validation -> dedup -> NDJSON -> answer. Each step is its own module; this one only wires them
to HTTP and turns their errors into status codes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeykit.collector.body import BodyError, inflate, read_limited
from journeykit.collector.dedup import Deduplicator
from journeykit.collector.errors import HttpError, error_body
from journeykit.collector.ingest import Ingestor, parse_envelope
from journeykit.collector.keys import KeyRing
from journeykit.collector.recovery import recent_message_ids, repair_torn_tails
from journeykit.collector.settings import CollectorSettings
from journeykit.collector.sink import NdjsonSink
from journeykit.sdk.protocol import MESSAGE_TYPES

__all__ = ["create_app"]

log = logging.getLogger("journeykit.collector")

_JSON_TYPES = ("application/json", "text/plain")  # text/plain: what sendBeacon can send


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


class _Collector:
    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings
        self.keys = KeyRing(settings.write_keys)
        self.events = self._sink("events")
        self.rejected = self._sink("rejected")
        torn_dir = settings.data_dir / "torn"
        self.torn = [
            *repair_torn_tails(settings.data_dir / "events", torn_dir / "events"),
            *repair_torn_tails(settings.data_dir / "rejected", torn_dir / "rejected"),
        ]
        dedup = Deduplicator(settings.dedup_window_seconds, settings.dedup_max_entries)
        dedup.commit(
            recent_message_ids(
                settings.data_dir / "events",
                settings.dedup_window_seconds,
                settings.dedup_max_entries,
            )
        )
        self.ingestor = Ingestor(settings, self.events, self.rejected, dedup)

    def _sink(self, name: str) -> NdjsonSink:
        s = self.settings
        return NdjsonSink(
            s.data_dir / name,
            fsync=s.fsync,
            fsync_interval=s.fsync_interval_seconds,
            rotate_bytes=s.rotate_bytes,
        )

    async def handle(self, request: Request, single_type: str | None) -> Response:
        s = self.settings
        header_key = KeyRing.from_basic_auth(request.headers.get("authorization"))
        if request.headers.get("authorization") is not None and not self.keys.check(header_key):
            raise HttpError(
                401,
                "unauthorized",
                "the write key is missing or wrong",
                {"WWW-Authenticate": 'Basic realm="journeykit"'},
            )
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in _JSON_TYPES:
            raise HttpError(415, "unsupported_media_type", "send Content-Type: application/json")
        try:
            raw = await read_limited(
                request.stream(), request.headers.get("content-length"), s.max_request_bytes
            )
            body = inflate(raw, request.headers.get("content-encoding"), s.max_request_bytes)
        except BodyError as exc:
            raise HttpError(exc.status, exc.code, exc.message) from None
        envelope = parse_envelope(body, single_type)
        if header_key is None and not self.keys.check(envelope.write_key):
            raise HttpError(
                401,
                "unauthorized",
                "the write key is missing or wrong",
                {"WWW-Authenticate": 'Basic realm="journeykit"'},
            )
        received_at = datetime.now(UTC)
        try:
            result = await run_in_threadpool(self.ingestor.ingest, envelope, received_at)
        except OSError as exc:
            log.error("journeykit collector: cannot write events: %s", exc)
            raise HttpError(
                503,
                "storage_unavailable",
                "the collector cannot store events right now; retry later",
                {"Retry-After": str(s.retry_after_seconds)},
            ) from None
        return _json(result.as_json())

    def ready(self) -> bool:
        root = self.settings.data_dir
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return os.access(root, os.W_OK)

    def close(self) -> None:
        self.events.close()
        self.rejected.close()


def create_app(settings: CollectorSettings) -> Starlette:
    """Build the collector ASGI app for ``settings``; files are closed at lifespan shutdown."""
    collector = _Collector(settings)

    async def batch(request: Request) -> Response:
        return await collector.handle(request, None)

    def single(type_: str) -> Any:
        async def endpoint(request: Request) -> Response:
            return await collector.handle(request, type_)

        endpoint.__name__ = type_
        return endpoint

    async def healthz(request: Request) -> Response:
        return _json({"ok": True})

    async def readyz(request: Request) -> Response:
        if collector.ready():
            return _json({"ok": True})
        return _json(error_body("not_ready", "the data directory is not writable"), 503)

    async def http_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, HttpError):  # registered for HttpError only
            return await server_error(request, exc)
        return _json(error_body(exc.code, exc.message), exc.status, exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("journeykit collector: unhandled error", exc_info=exc)
        return _json(error_body("internal_error", "internal error"), 500)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            collector.close()

    routes = [Route("/v1/batch", batch, methods=["POST"])]
    routes += [Route(f"/v1/{t}", single(t), methods=["POST"]) for t in MESSAGE_TYPES]
    routes += [Route("/healthz", healthz), Route("/readyz", readyz)]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HttpError: http_error, Exception: server_error},
    )
    app.state.collector = collector
    return app
