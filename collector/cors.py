"""CORS for the tracking API only, and only for the origins an operator lists.

Off by default: without ``cors_origins`` no answer carries an ``Access-Control-Allow-*`` header,
so no page on another origin can read the collector's answers. With it, browsers on those
origins may send events and read decisions (``/v1/*``, ``/beacon/v1/*``) with any request
headers; the admin API and the operations endpoints never answer CORS, whatever the origin.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["TrackingCors"]

_METHODS = ("GET", "POST", "OPTIONS")
# Any header a tracking request asks for: clients add their own (RudderStack's JavaScript SDK
# sends ``AnonymousId``, others ``X-Retry-Count``), and a header refused in the preflight is
# a request the browser never sends. Reading the answer stays limited to the listed origins.
_HEADERS = ("*",)
# The tracking API: ours, and RudderStack's beacon path (``ingest_paths``).
_PREFIXES = ("/v1/", "/beacon/v1/")


class TrackingCors:
    """Starlette's CORS middleware in front of ``/v1/*``; every other path passes untouched."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self._app = app
        self._cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=list(_METHODS),
            allow_headers=list(_HEADERS),
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(_PREFIXES):
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)
