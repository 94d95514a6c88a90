"""``GET /v1/decisions/{subject}``: one subject's personalization decision, for a write key.

The subject is a ``userId`` or ``anonymousId`` as the client sends it (URL-encoded). The answer
is a :class:`~journeykit.sdk._decision.Decision`: ``personalization`` is ``granted`` with segments,
stage, next best action and recommendations; ``not_consented`` (empty) when the collector's consent
record does not allow personalization or the subject is suppressed; ``unavailable`` (empty) while
the profile store cannot be reached. Rate limits count one event per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeykit.collector.errors import HttpError
from journeykit.collector.suppression import InvalidSubject, check_subject

if TYPE_CHECKING:
    from journeykit.collector.app import CollectorCore

__all__ = ["decision_routes"]


async def get_decision(request: Request) -> Response:
    collector: CollectorCore = request.app.state.collector
    collector.authenticate(request, events=1)
    subject: str = request.path_params["subject"]
    try:
        check_subject(subject)
    except InvalidSubject as exc:
        raise HttpError(400, "invalid_subject", str(exc)) from None
    personalizer = collector.personalizer
    if personalizer is None:
        raise HttpError(404, "decisions_disabled", "this collector keeps no profiles")
    decision = await anyio.to_thread.run_sync(personalizer.one, subject)
    body: dict[str, Any] = decision.model_dump(mode="json")
    return Response(orjson.dumps(body), media_type="application/json")


def decision_routes() -> list[Route]:
    return [Route("/v1/decisions/{subject:path}", get_decision, methods=["GET"])]
