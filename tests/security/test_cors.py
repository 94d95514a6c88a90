"""CORS: off by default, and configurable for sites that send events from the browser.

Off by default means no ``Access-Control-Allow-*`` header on any answer, preflight included,
so a page on another origin cannot read the collector's answers. Configurable means a
``cors_origins`` setting (TOML ``cors_origins``, ``JOURNEYKIT_CORS_ORIGINS``) lists the origins
allowed to POST events; nothing else gets the header.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from helpers import RunningCollector, running_collector

SHOP = "https://shop.example"
PREFLIGHT = {
    "Origin": SHOP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def cors_headers(answer: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in answer.headers.items() if k.lower().startswith("access-control-")}


def test_cors_is_off_by_default(collector: RunningCollector) -> None:
    for path in ("/v1/batch", "/v1/track", "/healthz", "/admin/v1/status"):
        preflight = httpx.options(collector.url + path, headers=PREFLIGHT)
        assert cors_headers(preflight) == {}, path
    answer = httpx.post(
        collector.url + "/v1/batch",
        json={"batch": [{"type": "track", "userId": "u", "event": "E"}]},
        headers={**collector.auth(), "Origin": SHOP},
    )
    assert answer.status_code == 200
    assert cors_headers(answer) == {}


def test_cors_origins_are_configurable(tmp_path: Path) -> None:
    # Fails with a ValidationError (extra field) until the setting exists: see docs/security.md.
    with running_collector(tmp_path / "data", cors_origins=(SHOP,)) as c:
        preflight = httpx.options(c.url + "/v1/batch", headers=PREFLIGHT)
        assert preflight.status_code in (200, 204)
        assert preflight.headers["access-control-allow-origin"] == SHOP
        assert "POST" in preflight.headers["access-control-allow-methods"]
        answer = httpx.post(
            c.url + "/v1/batch",
            json={"batch": [{"type": "track", "userId": "u", "event": "E"}]},
            headers={**c.auth(), "Origin": SHOP},
        )
        assert answer.headers["access-control-allow-origin"] == SHOP
        other = httpx.options(
            c.url + "/v1/batch", headers={**PREFLIGHT, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
        # Never for the admin API, whatever the origin.
        admin = httpx.options(c.url + "/admin/v1/status", headers=PREFLIGHT)
        assert "access-control-allow-origin" not in admin.headers
