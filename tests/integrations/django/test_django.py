"""The Django middleware under Django's own test clients, sync and async; no database."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings
from helpers import Recorder
from integrations.support import assert_private_flags, consent_messages, set_cookies

from journeykit.sdk import Client as TrackingClient
from journeykit.sdk.integrations.django import JourneyKitMiddleware


def cookies_of(response: HttpResponse) -> dict[str, dict[str, Any]]:
    return set_cookies([morsel.OutputString() for morsel in response.cookies.values()])


def viewed(recorder: Recorder) -> list[dict[str, Any]]:
    return [e for e in recorder.events if e.get("event") == "Product Viewed"]


def test_without_consent_nothing_leaves_the_app(client: TrackingClient, recorder: Recorder) -> None:
    with override_settings(JOURNEYKIT={"client": client, "page_views": True}):
        answer = Client().get("/products/p1")
    assert answer.status_code == 200
    assert recorder.requests == []
    assert client.stats().dropped["no_consent"] == 2
    assert cookies_of(answer) == {}


def test_accept_then_track_with_the_signed_in_user(
    client: TrackingClient, recorder: Recorder
) -> None:
    with override_settings(JOURNEYKIT={"client": client}):
        http = Client()
        answer = http.post("/journeykit/consent", {"choice": "accept", "next": "/products/p1"})
        assert answer.status_code == 303
        assert answer["Location"] == "/products/p1"
        cookies = cookies_of(answer)
        assert set(cookies) == {"jk_consent", "jk_aid"}
        for cookie in cookies.values():
            assert_private_flags(cookie)
        http.get("/products/p1", headers={"X-Test-User": "42"})
    [event] = viewed(recorder)
    assert event["userId"] == "42"
    assert event["anonymousId"] == cookies["jk_aid"]["value"]
    assert "traits" not in event  # no personal data added
    assert len(consent_messages(recorder.events)) == 1


def test_gpc_denies_marketing(client: TrackingClient, recorder: Recorder) -> None:
    with override_settings(JOURNEYKIT={"client": client}):
        http = Client(headers={"Sec-GPC": "1", "User-Agent": "pytest-browser"})
        http.post("/journeykit/consent", {"choice": "accept"})
        http.get("/products/p1")
    [message] = consent_messages(recorder.events)
    assert message["properties"]["purposes"]["marketing"] is False
    [event] = viewed(recorder)
    assert "userAgent" not in event["context"]
    assert event["context"]["consent"]["categoryPreferences"]["Marketing"] is False


def test_the_middleware_is_async_under_an_async_stack(client: TrackingClient) -> None:
    async def get_response(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    def get_response_sync(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    with override_settings(JOURNEYKIT={"client": client}):
        assert iscoroutinefunction(JourneyKitMiddleware(get_response))
        assert not iscoroutinefunction(JourneyKitMiddleware(get_response_sync))


def test_async_path_tracks_and_sets_cookies(client: TrackingClient, recorder: Recorder) -> None:
    async def visit() -> tuple[HttpResponse, HttpResponse]:
        http = AsyncClient()
        answer = await http.post("/journeykit/consent", {"choice": "accept"})
        return answer, await http.get("/products/p2", headers={"X-Test-User": "7"})

    with override_settings(JOURNEYKIT={"client": client}):
        answer, got = asyncio.run(visit())
    assert got.status_code == 200
    cookies = cookies_of(answer)
    for cookie in cookies.values():
        assert_private_flags(cookie)
    [event] = viewed(recorder)
    assert event["properties"]["product_id"] == "p2"
    assert event["userId"] == "7"
    assert event["anonymousId"] == cookies["jk_aid"]["value"]


def test_async_path_reads_a_user_set_without_auser(
    client: TrackingClient, recorder: Recorder
) -> None:
    async def visit() -> None:
        http = AsyncClient()
        await http.post("/journeykit/consent", {"choice": "accept"})
        await http.get("/products/p2", headers={"X-Test-User": "7", "X-Test-No-Auser": "1"})

    with override_settings(JOURNEYKIT={"client": client}):
        asyncio.run(visit())
    [event] = viewed(recorder)
    assert event["userId"] == "7"


CACHED = [
    "django.middleware.cache.UpdateCacheMiddleware",
    "integrations.django.myapp.middleware.FakeAuthenticationMiddleware",
    "journeykit.sdk.integrations.django.JourneyKitMiddleware",
    "django.middleware.cache.FetchFromCacheMiddleware",
]
LOCAL_CACHE = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def test_the_page_cache_never_replays_a_visitors_cookie(client: TrackingClient) -> None:
    with override_settings(JOURNEYKIT={"client": client}, MIDDLEWARE=CACHED, CACHES=LOCAL_CACHE):
        first = Client()
        first.post("/journeykit/consent", {"choice": "accept"})
        del first.cookies["jk_aid"]  # consent kept, the id cookie lost: a new one is set
        answer = first.get("/products/p1")
        assert "jk_aid" in cookies_of(answer)
        assert "Cookie" in answer["Vary"]
        assert "private" in answer["Cache-Control"]
        for _ in range(2):  # visitors who never consented
            assert cookies_of(Client().get("/products/p1")) == {}


def test_async_path_without_consent_sends_nothing(
    client: TrackingClient, recorder: Recorder
) -> None:
    with override_settings(JOURNEYKIT={"client": client, "page_views": True}):
        answer = asyncio.run(AsyncClient().get("/products/p2"))
    assert answer.status_code == 200
    assert recorder.requests == []


def test_misconfiguration_is_reported_by_name() -> None:
    with (
        override_settings(JOURNEYKIT={"cookie_samesite": "sometimes"}),
        pytest.raises(ImproperlyConfigured, match="cookie_samesite"),
    ):
        Client().get("/who")
