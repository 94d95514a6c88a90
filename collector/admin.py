"""The admin API's gate, ``require_admin``, and its first endpoint, ``GET /admin/v1/status``.

Admin requests carry the admin key as ``Authorization: Bearer <key>`` (or as the user name of
HTTP Basic, like write keys). No credential or a wrong one is 401; a write key is 403, because
write keys ship inside web pages and apps and must never open admin endpoints. With no admin
key configured every admin request is 403.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeykit.collector.answers import AdminStatus
from journeykit.collector.errors import HttpError
from journeykit.collector.keys import KeyRing
from journeykit.collector.settings import CollectorSettings

__all__ = ["AdminGate", "admin_routes", "require_admin"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="journeykit-admin"'}


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _credential(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    return KeyRing.from_basic_auth(header)


def _package_version() -> str:
    try:
        return version("journeykit")
    except PackageNotFoundError:  # running from a source tree without an install
        return "unknown"


class AdminGate:
    """What the admin API needs: the admin key's digest, the write keys, and the settings."""

    def __init__(self, settings: CollectorSettings, write_keys: KeyRing) -> None:
        self.settings = settings
        self.started = time.monotonic()
        self.version = _package_version()
        self._write_keys = write_keys
        admin = settings.admin_key
        self._admin = _digest(admin.get_secret_value()) if admin is not None else None

    def check(self, header: str | None) -> None:
        """Raise ``HttpError`` 401 or 403 unless ``header`` carries the admin key."""
        presented = _credential(header)
        if presented is None:
            raise HttpError(401, "unauthorized", "the admin key is missing", _CHALLENGE)
        # Both comparisons always run, so timing tells neither which kind of key was sent.
        digest = _digest(presented)
        is_admin = self._admin is not None and hmac.compare_digest(digest, self._admin)
        is_write_key = self._write_keys.check(presented)
        if is_admin:
            return
        if is_write_key:
            raise HttpError(403, "forbidden", "a write key cannot open admin endpoints")
        if self._admin is None:
            raise HttpError(403, "admin_disabled", "no admin key is configured")
        raise HttpError(401, "unauthorized", "the admin key is wrong", _CHALLENGE)


def require_admin(request: Request) -> None:
    """Raise ``HttpError`` 401/403 unless the request carries the collector's admin key."""
    gate: AdminGate = request.app.state.admin
    gate.check(request.headers.get("authorization"))


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


async def status(request: Request) -> Response:
    """``GET /admin/v1/status``: what this process serves; never any key."""
    require_admin(request)
    gate: AdminGate = request.app.state.admin
    s = gate.settings
    answer = AdminStatus(
        version=gate.version,
        pid=os.getpid(),
        uptime_seconds=round(time.monotonic() - gate.started, 3),
        data_dir=str(s.data_dir.resolve()),
        write_keys=len(s.write_keys),
        sources=sorted({k.source for k in s.write_keys}),
    )
    return _json(answer.model_dump(mode="json"))


def admin_routes() -> list[Route]:
    """The admin API's routes; ``create_app`` mounts them with an ``AdminGate`` in app.state."""
    return [Route("/admin/v1/status", status, methods=["GET"])]
