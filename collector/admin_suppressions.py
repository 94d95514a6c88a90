"""Admin endpoints of the suppression list: ``/admin/v1/suppressions[/{subject}]``.

``PUT`` suppresses a subject (optional JSON body ``{"reason": "..."}``), ``DELETE`` lifts it,
``GET`` on a subject says whether it is suppressed, and ``GET`` on the collection pages through
the list. ``{subject}`` is a raw ``userId``/``anonymousId`` (URL-encoded) or a pseudonym; only
its pseudonym is stored and answered. All need the admin key (see ``admin``).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeykit.collector.admin import require_admin
from journeykit.collector.answers import SuppressionAnswer, SuppressionEntry, SuppressionPage
from journeykit.collector.body import BodyError, read_limited
from journeykit.collector.errors import HttpError
from journeykit.collector.suppression import InvalidSubject, Suppression, SuppressionList

__all__ = ["MAX_PAGE", "suppression_routes"]

log = logging.getLogger("journeykit.collector")

MAX_PAGE = 1_000
_MAX_BODY = 4_096


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _answer(entry: Suppression | None, subject: str, status: int = 200) -> Response:
    answer = SuppressionAnswer(
        subject=subject,
        suppressed=entry is not None,
        entry=None if entry is None else SuppressionEntry.model_validate(entry.as_json()),
    )
    return _json(answer.model_dump(mode="json"), status)


def _list(request: Request) -> SuppressionList:
    found: SuppressionList = request.app.state.suppression
    return found


async def _call(request: Request, function: Any, *args: Any) -> Any:
    """Run a list operation off the event loop; bad input is 400, a locked disk 503."""
    try:
        return await run_in_threadpool(function, *args)
    except InvalidSubject as exc:
        raise HttpError(400, "invalid_subject", str(exc)) from None
    except sqlite3.Error as exc:
        log.error("journeykit collector: suppression list unavailable: %s", exc)
        raise HttpError(
            503,
            "storage_unavailable",
            "the suppression list cannot be written right now; retry later",
            {"Retry-After": str(request.app.state.admin.settings.retry_after_seconds)},
        ) from None


async def _reason(request: Request) -> str | None:
    try:
        raw = await read_limited(request.stream(), request.headers.get("content-length"), _MAX_BODY)
    except BodyError:
        raise HttpError(400, "invalid_body", f"the body is over {_MAX_BODY:,} bytes") from None
    if not raw.strip():
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HttpError(400, "invalid_body", "the body is not valid JSON") from None
    if not isinstance(doc, dict) or set(doc) - {"reason"}:
        raise HttpError(400, "invalid_body", 'the body must be {"reason": "..."} or empty')
    reason = doc.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise HttpError(400, "invalid_body", '"reason" must be a string')
    return reason


async def put_suppression(request: Request) -> Response:
    """``PUT /admin/v1/suppressions/{subject}``: 201 when added, 200 when already there."""
    require_admin(request)
    subject = request.path_params["subject"]
    reason = await _reason(request)
    suppressions = _list(request)
    before = await _call(request, suppressions.get, subject)
    entry = await _call(request, suppressions.add, subject, reason, "api")
    return _answer(entry, entry.subject, 200 if before is not None else 201)


async def delete_suppression(request: Request) -> Response:
    """``DELETE /admin/v1/suppressions/{subject}``: lifted (or never there); always 200."""
    require_admin(request)
    subject = request.path_params["subject"]
    suppressions = _list(request)
    pseudonyms = await _call(request, suppressions.pseudonyms, subject)
    await _call(request, suppressions.remove, subject)
    return _answer(None, pseudonyms[0])


async def get_suppression(request: Request) -> Response:
    """``GET /admin/v1/suppressions/{subject}``: whether the subject is suppressed."""
    require_admin(request)
    subject = request.path_params["subject"]
    suppressions = _list(request)
    pseudonyms = await _call(request, suppressions.pseudonyms, subject)
    entry = await _call(request, suppressions.get, subject)
    return _answer(entry, entry.subject if entry is not None else pseudonyms[0])


async def list_suppressions(request: Request) -> Response:
    """``GET /admin/v1/suppressions?limit=&after=``: a page of entries in subject order."""
    require_admin(request)
    raw_limit = request.query_params.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise HttpError(400, "invalid_query", f"limit must be a whole number from 1 to {MAX_PAGE}")
    limit = int(raw_limit)
    after = request.query_params.get("after")
    entries: list[Suppression] = await _call(request, _list(request).entries, limit, after)
    page = SuppressionPage(
        suppressions=[SuppressionEntry.model_validate(e.as_json()) for e in entries],
        next=entries[-1].subject if len(entries) == limit else None,
    )
    return _json(page.model_dump(mode="json"))


def suppression_routes() -> list[Route]:
    """The routes; ``create_app`` puts the ``SuppressionList`` in ``app.state.suppression``."""
    one = "/admin/v1/suppressions/{subject:path}"
    return [
        Route("/admin/v1/suppressions", list_suppressions, methods=["GET"]),
        Route(one, get_suppression, methods=["GET"]),
        Route(one, put_suppression, methods=["PUT"]),
        Route(one, delete_suppression, methods=["DELETE"]),
    ]
