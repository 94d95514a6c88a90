"""ASGI (Starlette, FastAPI, any ASGI app): a pure ASGI middleware, no framework imported.

The request-bound tracker is in ``scope["state"]["journeykit"]``, which Starlette and FastAPI
show as ``request.state.journeykit``::

    app.add_middleware(JourneyKitMiddleware, write_key="...", page_views=True)

The middleware also answers the banner's form at ``consent_path`` (``POST /journeykit/consent``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, quote

from journeykit.sdk._calls import Calls
from journeykit.sdk.integrations._banner import handle_banner
from journeykit.sdk.integrations._client import build_client
from journeykit.sdk.integrations._request import RequestInfo, cookie_pairs
from journeykit.sdk.integrations._settings import IntegrationSettings
from journeykit.sdk.integrations._tracker import RequestTracker, bound

__all__ = ["JourneyKitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MAX_FORM = 8 * 1024  # a banner form is a few dozen bytes


class JourneyKitMiddleware:
    """Binds a :class:`RequestTracker` to each HTTP request; other scopes pass through.

    Args:
        app: the ASGI application.
        client: a client to use (built with ``consent_resolver=request_consent``); by default
            one is built from the settings.
        settings: the settings; or give their fields as keyword arguments instead.
        user_id: called with the scope for the signed-in user's id (``None`` if none). It
            runs before the middleware inside this one, so read what an outer authentication
            middleware put in the scope (e.g. ``scope["user"]``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        client: Calls | None = None,
        settings: IntegrationSettings | None = None,
        user_id: Callable[[Scope], str | int | None] | None = None,
        **options: Any,
    ) -> None:
        if settings is not None and options:
            raise TypeError("pass settings= or setting keywords, not both")
        self.app = app
        self.settings = settings or IntegrationSettings(**options)
        self.client = client if client is not None else build_client(self.settings)
        self._user_id = user_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        user_id = self._user_id(scope) if self._user_id is not None else None
        tracker = RequestTracker(self.client, self.settings, _request_info(scope), user_id)
        scope.setdefault("state", {})["journeykit"] = tracker
        if scope["path"] == self.settings.consent_path:
            await _consent(tracker, receive, send)
            return

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                content_type = next(
                    (v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), None
                )
                tracker.after_response(message["status"], content_type)
                cookies = _cookie_headers(tracker)
                if cookies:
                    headers = _private(headers) + cookies
                message = {**message, "headers": headers}
            await send(message)

        with bound(tracker):
            await self.app(scope, receive, send_with_cookies)


async def _consent(tracker: RequestTracker, receive: Receive, send: Send) -> None:
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > _MAX_FORM:
            await _answer(send, 413, [], b"form too large")
            return
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    outcome = handle_banner(tracker, form)
    if outcome.status != 303:
        await _answer(send, outcome.status, [], outcome.error.encode())
        return
    # Header values are bytes: a path with "é" or "茶" is sent percent-encoded, as Flask and
    # Django send it, rather than as latin-1 with "?" for what latin-1 lacks (another path).
    target = quote(outcome.location, safe="/?#&=;:@!$'()*+,~%-._")
    location = [(b"location", target.encode("ascii"))]
    await _answer(send, 303, _private(location) + _cookie_headers(tracker), b"")


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _private(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``Vary: Cookie`` and ``Cache-Control: private``, for a response setting
    a per-visitor cookie that a shared cache must not replay to the next visitor."""
    out: list[tuple[bytes, bytes]] = []
    vary: list[bytes] = []
    control: list[bytes] = []
    for name, value in headers:
        key = name.lower()
        if key == b"vary":
            vary += [v.strip() for v in value.split(b",") if v.strip()]
        elif key == b"cache-control":
            control += [v.strip() for v in value.split(b",") if v.strip()]
        else:
            out.append((name, value))
    if not any(v == b"*" or v.lower() == b"cookie" for v in vary):
        vary.append(b"Cookie")
    control = [c for c in control if c.lower() != b"public"]
    if not any(c.lower() in (b"private", b"no-store") for c in control):
        control.append(b"private")
    return [*out, (b"vary", b", ".join(vary)), (b"cache-control", b", ".join(control))]


def _cookie_headers(tracker: RequestTracker) -> list[tuple[bytes, bytes]]:
    return [(b"set-cookie", op.header().encode("latin-1")) for op in tracker.cookie_ops()]


def _request_info(scope: Scope) -> RequestInfo:
    headers = tuple(
        (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", ())
    )
    host = next((v for k, v in headers if k == "host"), None)
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    cookies: dict[str, str] = {}
    for key, val in cookie_pairs(headers):
        cookies.setdefault(key, val)
    client = scope.get("client")
    return RequestInfo(
        method=scope.get("method", "GET"),
        scheme=scope.get("scheme", "http"),
        host=host,
        path=scope.get("path", "/"),
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        cookies=cookies,
        remote_addr=client[0] if client else None,
    )
