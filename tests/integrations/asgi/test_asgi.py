"""The pure ASGI middleware under Starlette and FastAPI, through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI, Request
from helpers import Recorder
from integrations.support import assert_private_flags, consent_messages, set_cookies
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from journeykit.sdk import Client
from journeykit.sdk.integrations import current_tracker
from journeykit.sdk.integrations.asgi import JourneyKitMiddleware

BASE = "https://testserver"  # the cookies are Secure


def starlette_app(client: Client, barrier: asyncio.Barrier | None = None, **settings: Any) -> Any:
    async def product(request: Request) -> HTMLResponse:
        tracker = request.state.journeykit
        if barrier is not None:
            await barrier.wait()  # both requests are in flight before either tracks
        assert current_tracker() is tracker
        tracker.track("Product Viewed", {"product_id": request.query_params.get("id", "p1")})
        return HTMLResponse("<p>product</p>")

    async def robots(request: Request) -> PlainTextResponse:
        return PlainTextResponse("User-agent: *")

    async def logout(request: Request) -> PlainTextResponse:
        request.state.journeykit.reset()
        cached = {"Cache-Control": "public, max-age=600", "Vary": "Accept-Encoding"}
        return PlainTextResponse("bye", headers=cached)

    return Starlette(
        routes=[
            Route("/product", product),
            Route("/robots.txt", robots),
            Route("/logout", logout, methods=["POST"]),
        ],
        middleware=[Middleware(JourneyKitMiddleware, client=client, **settings)],
    )


def run(app: Any, *steps: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            return [await http.request(method, url, **kw) for method, url, kw in steps]

    return asyncio.run(main())


ACCEPT = ("POST", "/journeykit/consent", {"data": {"choice": "accept", "next": "/product"}})


def test_without_consent_nothing_leaves_the_app(client: Client, recorder: Recorder) -> None:
    [answer] = run(starlette_app(client, page_views=True), ("GET", "/product", {}))
    assert answer.status_code == 200
    assert recorder.requests == []
    assert "set-cookie" not in answer.headers


def test_accept_sets_private_cookies_then_events_flow(client: Client, recorder: Recorder) -> None:
    app = starlette_app(client, page_views=True)
    consent, _, _ = run(app, ACCEPT, ("GET", "/product", {}), ("GET", "/robots.txt", {}))
    assert consent.status_code == 303
    assert consent.headers["location"] == "/product"
    cookies = set_cookies(consent.headers.get_list("set-cookie"))
    assert set(cookies) == {"jk_consent", "jk_aid"}
    for cookie in cookies.values():
        assert_private_flags(cookie)
    kinds = [e.get("event") or e["type"] for e in recorder.events]
    assert kinds == ["Consent Updated", "Product Viewed", "page"]  # robots.txt: excluded
    assert {e["anonymousId"] for e in recorder.events} == {cookies["jk_aid"]["value"]}


def test_reset_at_sign_out_sets_a_new_anonymous_id_cookie(
    client: Client, recorder: Recorder
) -> None:
    app = starlette_app(client)
    consent, out, _ = run(app, ACCEPT, ("POST", "/logout", {}), ("GET", "/product", {}))
    before = set_cookies(consent.headers.get_list("set-cookie"))["jk_aid"]["value"]
    cookie = set_cookies(out.headers.get_list("set-cookie"))["jk_aid"]
    assert_private_flags(cookie)
    assert cookie["value"] != before
    [viewed] = [e for e in recorder.events if e.get("event") == "Product Viewed"]
    assert viewed["anonymousId"] == cookie["value"]


def test_a_response_setting_a_visitors_cookie_is_private(client: Client) -> None:
    # A shared cache replaying the new anonymous id would give it to every later visitor.
    consent, out, plain = run(
        starlette_app(client), ACCEPT, ("POST", "/logout", {}), ("GET", "/product", {})
    )
    assert (consent.headers["vary"], consent.headers["cache-control"]) == ("Cookie", "private")
    assert out.headers["vary"] == "Accept-Encoding, Cookie"
    assert out.headers["cache-control"] == "max-age=600, private"
    assert "set-cookie" not in plain.headers
    assert "cache-control" not in plain.headers


def test_the_banner_redirects_to_a_path_of_any_script(client: Client) -> None:
    step = ("POST", "/journeykit/consent", {"data": {"choice": "reject", "next": "/catégorie/茶"}})
    [answer] = run(starlette_app(client), step)
    assert answer.headers["location"] == "/cat%C3%A9gorie/%E8%8C%B6"  # as Flask and Django


def test_gpc_denies_marketing(client: Client, recorder: Recorder) -> None:
    gpc = {"headers": {"Sec-GPC": "1", "User-Agent": "pytest-browser"}}
    run(starlette_app(client), (*ACCEPT[:2], {**ACCEPT[2], **gpc}), ("GET", "/product", gpc))
    [message] = consent_messages(recorder.events)
    assert message["properties"]["purposes"]["marketing"] is False
    [event] = [e for e in recorder.events if e.get("event") == "Product Viewed"]
    assert "userAgent" not in event["context"]


def test_concurrent_requests_keep_their_own_consent(client: Client, recorder: Recorder) -> None:
    """Two requests interleaved on one event loop: the granted one is sent, the other is not."""

    async def main() -> None:
        barrier = asyncio.Barrier(2)
        app = starlette_app(client, barrier)
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url=BASE) as granted,
            httpx.AsyncClient(transport=transport, base_url=BASE) as unknown,
        ):
            await granted.post("/journeykit/consent", data={"choice": "accept"})
            await asyncio.gather(
                granted.get("/product", params={"id": "granted"}),
                unknown.get("/product", params={"id": "unknown"}),
            )

    asyncio.run(main())
    viewed = [e for e in recorder.events if e.get("event") == "Product Viewed"]
    products = [e["properties"]["product_id"] for e in viewed]
    assert products.count("granted") == 1
    assert "unknown" not in products
    assert client.stats().dropped["no_consent"] == 1


def test_fastapi_tracker_in_request_state(client: Client, recorder: Recorder) -> None:
    app = FastAPI()
    app.add_middleware(JourneyKitMiddleware, client=client, user_id=lambda scope: "u-1")

    @app.get("/checkout")
    def checkout(request: Request) -> dict[str, Any]:  # a sync endpoint: runs in a thread
        result = request.state.journeykit.track("Checkout Started", {"value": 10})
        return {"queued": bool(result)}

    _, answer = run(app, ACCEPT, ("GET", "/checkout", {}))
    assert answer.json() == {"queued": True}
    [event] = [e for e in recorder.events if e.get("event") == "Checkout Started"]
    assert event["userId"] == "u-1"


def test_other_scopes_pass_through(client: Client) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = JourneyKitMiddleware(app, client=client)
    asyncio.run(middleware({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]
