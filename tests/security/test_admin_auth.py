"""Every route of the app is public on purpose, or refuses a request without the right key.

The routes are read from the running app, so a route added later is covered without editing
this file: an admin route (``/admin/``) must answer 401 to no key or a wrong one and 403 to a
write key, by any method it serves; any other route must be in ``PUBLIC`` or refuse a request
without credentials with 401.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from helpers import WRITE_KEY, basic_auth, running_collector
from pydantic import SecretStr
from starlette.routing import BaseRoute, Mount, Route

ADMIN_KEY = "admin-key-0123456789abcdef-sec"
PUBLIC = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})


def routes(app: Any) -> Iterator[tuple[str, str]]:
    """``(method, path)`` for every endpoint of ``app``, path parameters filled in."""

    def walk(found: list[BaseRoute], prefix: str) -> Iterator[tuple[str, str]]:
        for route in found:
            if isinstance(route, Mount):
                yield from walk(list(route.routes), prefix + route.path)
            elif isinstance(route, Route):
                path = re.sub(r"\{[^}]+\}", "subject-1", prefix + route.path)
                for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                    yield method, path
            else:  # a WebSocket or custom route: unknown, so never silently allowed
                raise AssertionError(f"unexpected route type {type(route).__name__}")

    return walk(list(app.routes), "")


def call(url: str, method: str, headers: dict[str, str]) -> httpx.Response:
    # A JSON body every ingestion endpoint parses, so the key check is what decides.
    body = b'{"batch": [], "type": "track"}' if method in ("POST", "PUT", "PATCH") else None
    headers = {**headers, "Content-Type": "application/json"}
    return httpx.request(method, url, content=body, headers=headers)


def refusals() -> dict[str, tuple[int, dict[str, str]]]:
    return {
        "no key": (401, {}),
        "wrong bearer": (401, {"Authorization": "Bearer not-the-admin-key-000000"}),
        "wrong basic": (401, basic_auth("not-the-admin-key-000000")),
        "garbage": (401, {"Authorization": "Basic %%%"}),
        "write key as bearer": (403, {"Authorization": f"Bearer {WRITE_KEY}"}),
        "write key as basic": (403, basic_auth(WRITE_KEY)),
    }


def test_every_admin_route_refuses_write_keys_and_missing_keys(tmp_path: Path) -> None:
    with running_collector(tmp_path / "data", admin_key=SecretStr(ADMIN_KEY)) as c:
        admin = [(m, p) for m, p in routes(c.app) if p.startswith("/admin/")]
        assert admin, "no admin routes found"
        for method, path in admin:
            for label, (status, headers) in refusals().items():
                answer = call(c.url + path, method, headers)
                assert answer.status_code == status, (method, path, label, answer.text)
                assert answer.json()["ok"] is False
                assert answer.json()["error"]["code"] in ("unauthorized", "forbidden")
            opened = call(c.url + path, method, {"Authorization": f"Bearer {ADMIN_KEY}"})
            assert opened.status_code not in (401, 403), (method, path, opened.text)
            assert WRITE_KEY not in opened.text
            assert ADMIN_KEY not in opened.text


def test_admin_routes_are_closed_without_an_admin_key(tmp_path: Path) -> None:
    with running_collector(tmp_path / "data") as c:
        for method, path in routes(c.app):
            if not path.startswith("/admin/"):
                continue
            for headers in ({"Authorization": f"Bearer {ADMIN_KEY}"}, basic_auth(WRITE_KEY)):
                answer = call(c.url + path, method, headers)
                assert answer.status_code == 403, (method, path, answer.text)


def test_every_other_route_is_public_on_purpose_or_needs_a_key(tmp_path: Path) -> None:
    with running_collector(tmp_path / "data") as c:
        checked = 0
        for method, path in routes(c.app):
            if path in PUBLIC or path.startswith("/admin/"):
                continue
            for headers in ({}, basic_auth("wrong-write-key-0000")):
                answer = call(c.url + path, method, headers)
                assert answer.status_code == 401, (method, path, answer.text)
                assert "WWW-Authenticate" in answer.headers
            checked += 1
        assert checked >= 7  # /v1/batch and the six /v1/<type>
