"""The Django shop and the FastAPI app, each against a real collector on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers import PSEUDONYM_KEY, ROOT, WRITE_KEY, running_collector

from journeykit.collector.config import ServerSettings, env_name
from journeykit.collector.settings import CollectorSettings

# Runs inside the Django shop's own process (its settings cannot share ours).
DJANGO_JOURNEY = """
from django.conf import settings
from django.test import Client

http = Client(HTTP_HOST="127.0.0.1")
assert http.get("/").status_code == 200
# The banner sends the visitor back to the page it was on (the request context processor).
page = http.get("/products/tea-01").content.decode()
assert 'name="next" value="/products/tea-01"' in page, page
back = http.post("/journeykit/consent", {"choice": "accept", "next": "/products/tea-01"})
assert (back.status_code, back["Location"]) == (303, "/products/tea-01")
assert http.get("/products/tea-02").status_code == 200
assert http.post("/cart/add", {"product_id": "tea-02"}).status_code == 302
assert b"Assam" in http.get("/cart").content
assert settings.JOURNEYKIT["client"].flush(timeout=10)
"""


def test_django_shop_journey_reaches_the_collector(tmp_path: Path) -> None:
    with running_collector(tmp_path / "data", consent_regime="opt_in") as collector:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEYKIT_", "DJANGO_"))}
        env.update(
            JOURNEYKIT_WRITE_KEY=WRITE_KEY,
            JOURNEYKIT_PSEUDONYM_KEY=PSEUDONYM_KEY,
            JOURNEYKIT_COLLECTOR_URL=collector.url,
        )
        manage = ROOT / "examples" / "django_shop" / "manage.py"
        result = subprocess.run(
            [sys.executable, str(manage), "shell", "-c", DJANGO_JOURNEY],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        events = [e.get("event") or e["type"] for e in collector.events]
    assert events[0] == "Consent Updated"
    for name in ("page", "Product Viewed", "Product Added", "Cart Viewed"):
        assert name in events, events


def test_fastapi_app_tracks_only_with_consent(tmp_path: Path) -> None:
    from fastapi_app.app import create_app

    from journeykit.sdk.integrations import IntegrationSettings, build_client

    with running_collector(tmp_path / "data", consent_regime="opt_in") as collector:
        settings = IntegrationSettings(write_key=WRITE_KEY, host=collector.url)
        client = build_client(settings, pseudonym_key=PSEUDONYM_KEY)

        async def visit() -> None:
            app = create_app(client=client, host=collector.url)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                before = await http.post("/cart/tea-01")
                assert before.json() == {"added": "tea-01", "tracked": False}
                await http.post("/journeykit/consent", data={"choice": "accept"})
                assert (await http.get("/products/tea-01")).status_code == 200
                after = await http.post("/cart/tea-01")
                assert after.json()["tracked"] is True

        try:
            asyncio.run(visit())
            assert client.flush(timeout=10)
        finally:
            client.shutdown(timeout=5)
        events = [e.get("event") or e["type"] for e in collector.events]
    assert events == ["Consent Updated", "Product Viewed", "Product Added"]


def test_the_examples_and_the_collector_can_share_an_environment() -> None:
    # A variable both read must mean the same to both: JOURNEYKIT_HOST was the collector's
    # bind address and the examples' collector URL, so one shell could not run both.
    read = set(re.findall(r"JOURNEYKIT_[A-Z_]+", "".join(
        path.read_text() for path in (ROOT / "examples").rglob("*.py")
    )))  # fmt: skip
    settings = {*CollectorSettings.model_fields, *ServerSettings.model_fields}
    shared = read & {env_name(field) for field in settings}
    assert shared <= {
        "JOURNEYKIT_DATA_DIR",
        "JOURNEYKIT_PSEUDONYM_KEY",
        "JOURNEYKIT_PSEUDONYM_KEY_FILE",
    }, shared


def test_a_configured_pseudonym_key_file_is_never_replaced_by_a_dev_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from flask_shop.shop import collector_options
    finally:
        sys.path.remove(str(ROOT / "examples"))
    (tmp_path / "dev-write-key").write_text("dev-write")
    (tmp_path / "dev-pseudonym-key").write_text("a leftover development key")
    for name in ("JOURNEYKIT_WRITE_KEY", "JOURNEYKIT_PSEUDONYM_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOURNEYKIT_PSEUDONYM_KEY_FILE", str(tmp_path / "production.key"))
    options = collector_options(tmp_path)
    # No pseudonymizer of the example's own: the SDK reads the configured key file.
    assert options == {"write_key": "dev-write"}
    monkeypatch.delenv("JOURNEYKIT_PSEUDONYM_KEY_FILE")
    assert "pseudonymizer" in collector_options(tmp_path)  # the collector's dev key, shared
