"""Django: ``JourneyKitMiddleware`` puts a request-bound tracker on ``request.journeykit``.

Configure with a ``JOURNEYKIT`` dict in the settings (the fields of
:class:`~journeykit.sdk.integrations.IntegrationSettings`, plus ``"client"`` to pass a client you
built with ``consent_resolver=request_consent``), add the middleware after Django's
``AuthenticationMiddleware``, and route :func:`consent_view` for the banner's form::

    MIDDLEWARE = [..., "journeykit.sdk.integrations.django.JourneyKitMiddleware"]
    JOURNEYKIT = {"write_key": "...", "host": "http://127.0.0.1:8787", "page_views": True}

The middleware is sync and async capable: under ASGI it runs without a thread hop and reads the
user with ``request.auser()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
    from django.conf import settings as django_settings
    from django.core.exceptions import ImproperlyConfigured
    from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
    from django.utils.cache import patch_cache_control, patch_vary_headers
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without Django
    raise ImportError(
        "journeykit.sdk.integrations.django needs Django: pip install 'journeykit[django]'"
    ) from exc

from pydantic import ValidationError

from journeykit.sdk._calls import Calls
from journeykit.sdk.integrations._banner import handle_banner
from journeykit.sdk.integrations._client import build_client
from journeykit.sdk.integrations._request import RequestInfo
from journeykit.sdk.integrations._settings import IntegrationSettings
from journeykit.sdk.integrations._tracker import RequestTracker, bound

__all__ = ["JourneyKitMiddleware", "consent_view", "tracker_for"]

_Sync = Callable[[HttpRequest], HttpResponseBase]
_Async = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


class JourneyKitMiddleware:
    """Binds a :class:`RequestTracker` to each request as ``request.journeykit``.

    It reads the consent cookie and ``Sec-GPC``, sends an automatic page view if
    ``page_views`` is on, and sets the tracker's cookies on the response.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: _Sync | _Async) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        self.settings, self.client = _configure()

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        user = getattr(request, "user", None)
        tracker = self._start(request, user)
        with bound(tracker):
            response: HttpResponseBase = self.get_response(request)  # type: ignore[assignment]
        return self._finish(tracker, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        auser = getattr(request, "auser", None)
        if auser is not None:
            user = await auser()
        else:
            # An authentication middleware of the app's own sets request.user alone; reading it
            # may query the database, which Django allows only off the event loop.
            user = await sync_to_async(_user_of)(request)
        tracker = self._start(request, user)
        with bound(tracker):
            response = await self.get_response(request)  # type: ignore[misc]
        return self._finish(tracker, response)

    def _start(self, request: HttpRequest, user: Any) -> RequestTracker:
        user_id = str(user.pk) if user is not None and user.is_authenticated else None
        tracker = RequestTracker(self.client, self.settings, _request_info(request), user_id)
        request.journeykit = tracker  # type: ignore[attr-defined]
        return tracker

    def _finish(self, tracker: RequestTracker, response: HttpResponseBase) -> HttpResponseBase:
        tracker.after_response(response.status_code, response.get("Content-Type"))
        ops = tracker.cookie_ops()
        if ops:
            # A per-visitor cookie: Django's page cache would replay it to every later visitor
            # (one anonymous id for all, set without their consent), as would a shared cache.
            patch_vary_headers(response, ("Cookie",))
            patch_cache_control(response, private=True)
        for op in ops:
            response.set_cookie(
                op.name,
                op.value or "",
                max_age=op.max_age,
                path=op.path,
                domain=op.domain,
                secure=op.secure,
                httponly=op.httponly,
                samesite=op.samesite,  # type: ignore[arg-type]
            )
        return response


def _user_of(request: HttpRequest) -> Any:
    return getattr(request, "user", None)


def tracker_for(request: HttpRequest) -> RequestTracker:
    """``request.journeykit``, or a clear error when the middleware is not installed."""
    tracker = getattr(request, "journeykit", None)
    if not isinstance(tracker, RequestTracker):
        raise ImproperlyConfigured(
            "request.journeykit is missing: add "
            "'journeykit.sdk.integrations.django.JourneyKitMiddleware' to MIDDLEWARE"
        )
    return tracker


def consent_view(request: HttpRequest) -> HttpResponse:
    """The banner's form endpoint: records the choice, sets the cookies, redirects to ``next``.

    Route it yourself (``path("journeykit/consent", consent_view)``); Django's CSRF protection
    applies as to any form, and a cross-site post is refused in any case.
    """
    form = {key: request.POST.getlist(key) for key in request.POST}
    outcome = handle_banner(tracker_for(request), form)
    if outcome.status != 303:
        return HttpResponse(outcome.error, status=outcome.status, content_type="text/plain")
    response = HttpResponseRedirect(outcome.location)
    response.status_code = 303
    return response


def _configure() -> tuple[IntegrationSettings, Calls]:
    raw = dict(getattr(django_settings, "JOURNEYKIT", {}))
    client = raw.pop("client", None)
    try:
        settings = IntegrationSettings(**raw)
        if client is None:
            client = build_client(settings)
    except (ValidationError, ValueError) as exc:
        raise ImproperlyConfigured(f"settings.JOURNEYKIT: {exc}") from exc
    if not isinstance(client, Calls):
        raise ImproperlyConfigured("settings.JOURNEYKIT['client'] must be a journeykit client")
    return settings, client


def _request_info(request: HttpRequest) -> RequestInfo:
    return RequestInfo(
        method=request.method or "GET",
        scheme=request.scheme or "http",
        host=request.get_host(),
        path=request.path,
        query_string=request.META.get("QUERY_STRING", ""),
        headers=tuple((name.lower(), value) for name, value in request.headers.items()),
        cookies=request.COOKIES,
        remote_addr=request.META.get("REMOTE_ADDR") or None,
    )
