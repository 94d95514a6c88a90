"""Admin endpoints for data-subject requests: ``/admin/v1/dsr/{export,erase,requests}``.

``POST /admin/v1/dsr/export`` with ``{"subject": ..., "law": "gdpr"|"ccpa", "reference": ...}``
answers the access export as ``application/zip`` (the request id in ``X-Request-Id``);
``POST /admin/v1/dsr/erase`` with the same body carries out an erasure and answers its receipt;
``GET /admin/v1/dsr/requests`` lists the request log. All need the admin key; the work runs
off the event loop, and the same :class:`~journeykit.collector.dsr.service.DsrService` serves
the CLI.
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from journeykit.collector.admin import require_admin
from journeykit.collector.answers import (
    DsrErasureAnswer,
    DsrRequestEntry,
)
from journeykit.collector.body import BodyError, read_limited
from journeykit.collector.dsr.requests import Law
from journeykit.collector.dsr.service import DsrService
from journeykit.collector.errors import HttpError
from journeykit.collector.suppression import SUBJECT_PATTERN, TEXT_PATTERN, InvalidSubject
from journeykit.consent import ConsentError

__all__ = ["DsrBody", "dsr_routes"]

log = logging.getLogger("journeykit.collector")

_MAX_BODY = 4_096


class DsrBody(BaseModel):
    """The body of an export or erasure request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str = Field(
        min_length=1,
        max_length=512,
        pattern=SUBJECT_PATTERN,
        description="What the person gave: user id, anonymous id, email or phone number.",
    )
    law: Law = Field(default=Law.GDPR, description="Sets the deadline: one month or 45 days.")
    reference: str | None = Field(
        default=None,
        max_length=200,
        pattern=TEXT_PATTERN,
        description="Your ticket number, kept in the request log.",
    )


def _service(request: Request) -> DsrService:
    service: DsrService = request.app.state.dsr
    return service


async def _body(request: Request) -> DsrBody:
    try:
        raw = await read_limited(request.stream(), request.headers.get("content-length"), _MAX_BODY)
        return DsrBody.model_validate_json(raw)
    except (BodyError, ValidationError):
        raise HttpError(
            400, "invalid_body", 'send {"subject": "...", "law": "gdpr"|"ccpa", "reference": ...}'
        ) from None


async def _run(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except InvalidSubject as exc:
        raise HttpError(400, "invalid_subject", str(exc)) from None
    except (OSError, sqlite3.Error, ConsentError) as exc:
        # The disk, a locked or damaged database, a ledger that needs repair: the request is
        # logged as failed and may be run again (each step is idempotent).
        log.error("journeykit dsr: request failed: %s", exc)
        raise HttpError(
            503,
            "storage_unavailable",
            "the request could not be carried out; retry later",
            {"Retry-After": "5"},
        ) from None


async def export(request: Request) -> Response:
    require_admin(request)
    body = await _body(request)
    service = _service(request)
    folder = service.data_dir / "dsr" / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    # Never a name from the request: the subject is untrusted and personal.
    handle = tempfile.NamedTemporaryFile(dir=folder, suffix=".zip", delete=False)  # noqa: SIM115
    handle.close()
    out = Path(handle.name)
    try:
        done, _ = await _run(
            service.export, body.subject, out, law=body.law, reference=body.reference
        )
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return FileResponse(
        out,
        media_type="application/zip",
        filename=f"access-export-{stamp}-{done.id}.zip",
        headers={"X-Request-Id": done.id},
        background=BackgroundTask(out.unlink, missing_ok=True),
    )


async def erase(request: Request) -> Response:
    require_admin(request)
    body = await _body(request)
    report = await _run(
        _service(request).erase, body.subject, law=body.law, reference=body.reference
    )
    entry = DsrRequestEntry.model_validate(report.request.as_json())
    answer = DsrErasureAnswer(request=entry).model_dump(mode="json")
    return Response(orjson.dumps(answer), media_type="application/json")


async def requests(request: Request) -> Response:
    require_admin(request)
    now = datetime.now(UTC)
    listed = [{**r.as_json(), "overdue": r.overdue(now)} for r in _service(request).log.requests()]
    return Response(orjson.dumps({"ok": True, "requests": listed}), media_type="application/json")


def dsr_routes() -> list[Route]:
    return [
        Route("/admin/v1/dsr/export", export, methods=["POST"]),
        Route("/admin/v1/dsr/erase", erase, methods=["POST"]),
        Route("/admin/v1/dsr/requests", requests, methods=["GET"]),
    ]
