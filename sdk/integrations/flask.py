"""Flask: the ``JourneyKit`` extension puts a request-bound tracker on ``g.journeykit``.

Configure with ``app.config["JOURNEYKIT"]`` (the fields of
:class:`~journeykit.sdk.integrations.IntegrationSettings`, plus ``"client"`` to pass a client you
built with ``consent_resolver=request_consent``)::

    app.config["JOURNEYKIT"] = {"write_key": "...", "page_views": True}
    journeykit = JourneyKit(app, user_id=lambda: session.get("user_id"))

It also serves the banner's form at ``consent_path`` (``POST /journeykit/consent``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from contextvars import Token
from dataclasses import dataclass
from typing import Any

try:
    from flask import Flask, Response, current_app, g, redirect, request
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without Flask
    raise ImportError(
        "journeykit.sdk.integrations.flask needs Flask: pip install 'journeykit[flask]'"
    ) from exc

from journeykit.sdk._calls import Calls
from journeykit.sdk.integrations._banner import handle_banner
from journeykit.sdk.integrations._client import build_client
from journeykit.sdk.integrations._request import RequestInfo
from journeykit.sdk.integrations._settings import IntegrationSettings
from journeykit.sdk.integrations._tracker import RequestTracker, _current

__all__ = ["JourneyKit", "client_of"]

_EXTENSION = "journeykit"


@dataclass(frozen=True, slots=True)
class _AppState:
    settings: IntegrationSettings
    client: Calls
    user_id: Callable[[], str | int | None] | None


class JourneyKit:
    """The Flask extension; ``JourneyKit(app)`` or ``JourneyKit()`` then ``init_app(app)``.

    Args:
        app: the application, or ``None`` to call :meth:`init_app` later.
        client: a client to use instead of building one from the config.
        user_id: called during each request for the signed-in user's id (``None`` if none).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        client: Calls | None = None,
        user_id: Callable[[], str | int | None] | None = None,
    ) -> None:
        self._client = client
        self._user_id = user_id
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read ``app.config["JOURNEYKIT"]`` and hook the request lifecycle of ``app``."""
        raw = dict(app.config.get("JOURNEYKIT", {}))
        client = raw.pop("client", None) or self._client
        settings = IntegrationSettings(**raw)
        if client is None:
            client = build_client(settings)
        app.extensions[_EXTENSION] = _AppState(settings, client, self._user_id)
        app.before_request(_before)
        app.after_request(_after)
        app.teardown_request(_teardown)
        if settings.consent_path:
            app.add_url_rule(
                settings.consent_path, "journeykit_consent", _consent, methods=["POST"]
            )


def client_of(app: Flask | None = None) -> Any:
    """The client serving ``app`` (by default the current one), e.g. to flush it at exit."""
    state: _AppState = (app or current_app).extensions[_EXTENSION]
    return state.client


def _before() -> None:
    state: _AppState = current_app.extensions[_EXTENSION]
    user_id = state.user_id() if state.user_id is not None else None
    tracker = RequestTracker(state.client, state.settings, _request_info(), user_id)
    g.journeykit = tracker
    g._journeykit_token = _current.set(tracker)


def _after(response: Response) -> Response:
    tracker: RequestTracker | None = g.get("journeykit")
    if tracker is None:  # a before_request handler before ours answered the request
        return response
    tracker.after_response(response.status_code, response.content_type)
    ops = tracker.cookie_ops()
    if ops:
        # A per-visitor cookie: a shared cache must not replay it to the next visitor.
        response.vary.add("Cookie")
        response.cache_control.private = True
        response.cache_control.public = False
    for op in ops:
        response.set_cookie(
            op.name,
            op.value or "",
            max_age=op.max_age,
            path=op.path,
            domain=op.domain,
            secure=op.secure,
            httponly=op.httponly,
            samesite=op.samesite,
        )
    return response


def _teardown(_exc: BaseException | None) -> None:
    token: Token[Any] | None = g.pop("_journeykit_token", None)
    if token is not None:
        # ValueError: set in another context (an async view's), which ends with it anyway.
        with suppress(ValueError):
            _current.reset(token)


def _consent() -> Any:
    outcome = handle_banner(g.journeykit, request.form.to_dict(flat=False))
    if outcome.status != 303:
        return Response(outcome.error, status=outcome.status, mimetype="text/plain")
    return redirect(outcome.location, code=303)


def _request_info() -> RequestInfo:
    return RequestInfo(
        method=request.method,
        scheme=request.scheme,
        host=request.host,
        path=request.path,
        query_string=request.query_string.decode("latin-1"),
        headers=tuple((name.lower(), value) for name, value in request.headers.items()),
        cookies=request.cookies.to_dict(),
        remote_addr=request.remote_addr,
    )
