"""The Flask extension under Flask's own test client; the SDK's network edge is a Recorder."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from flask import Flask, g
from helpers import Recorder
from integrations.support import (
    assert_private_flags,
    consent_messages,
    recording_client,
    set_cookies,
    track_events,
)

from journeykit.sdk import Client
from journeykit.sdk.integrations.flask import JourneyKit


def make_app(client: Client, user: int | None = None, **settings: Any) -> Flask:
    app = Flask(__name__)
    app.config["JOURNEYKIT"] = {"client": client, **settings}
    JourneyKit(app, user_id=lambda: user)

    @app.get("/signin")
    def signin() -> str:
        return g.journeykit.alias().reason or "sent"

    @app.get("/buy")
    def buy() -> str:
        g.journeykit.track("Product Viewed", {"product_id": "p1"})
        return "<p>bought</p>"

    @app.get("/static/app.css")
    def css() -> str:
        return "body {}"

    @app.post("/logout")
    def logout() -> str:
        g.journeykit.track("Signed Out")
        g.journeykit.reset()
        g.journeykit.track("Logged Out Page Viewed")
        return "bye"

    @app.get("/who")
    def who() -> dict[str, Any]:
        tracker = g.journeykit
        return {"user_id": tracker.user_id, "anonymous_id": tracker.anonymous_id}

    return app


def accept(app: Flask, **headers: str) -> Any:
    http = app.test_client()
    answer = http.post(
        "/journeykit/consent", data={"choice": "accept", "next": "/buy"}, headers=headers
    )
    return http, answer


def test_without_consent_nothing_leaves_the_app(client: Client, recorder: Recorder) -> None:
    app = make_app(client, page_views=True)
    http = app.test_client()
    answer = http.get("/buy")
    assert answer.status_code == 200
    assert recorder.requests == []
    assert client.stats().dropped["no_consent"] == 2  # the track and the automatic page view
    assert "jk_aid" not in set_cookies(answer.headers.getlist("Set-Cookie"))


def test_accept_sets_private_cookies_and_sends_the_choice(
    client: Client, recorder: Recorder
) -> None:
    app = make_app(client)
    http, answer = accept(app)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/buy"
    cookies = set_cookies(answer.headers.getlist("Set-Cookie"))
    assert set(cookies) == {"jk_consent", "jk_aid"}
    for cookie in cookies.values():
        assert_private_flags(cookie)
    assert (answer.headers["Vary"], answer.headers["Cache-Control"]) == ("Cookie", "private")
    [message] = consent_messages(recorder.events)
    assert message["properties"]["purposes"] == {
        "analytics": True,
        "personalization": True,
        "marketing": True,
    }
    assert message["anonymousId"] == cookies["jk_aid"]["value"]

    http.get("/buy", headers={"User-Agent": "pytest-browser"})
    [viewed] = [e for e in recorder.events if e.get("event") == "Product Viewed"]
    assert viewed["anonymousId"] == cookies["jk_aid"]["value"]
    assert viewed["context"]["page"]["path"] == "/buy"
    assert viewed["context"]["userAgent"] == "pytest-browser"
    assert viewed["context"]["consent"]["categoryPreferences"]["Analytics"] is True


def test_an_integer_user_id_is_the_user_the_consent_belongs_to(
    client: Client, recorder: Recorder
) -> None:
    # session["user_id"] is an integer primary key in most apps: the alias that links the
    # browser to the user carries no anonymousId, and must still find the browser's consent.
    # The choice was made in another process: this one knows it from the cookie alone.
    http, _ = accept(make_app(client))
    later = Recorder()
    fresh = recording_client(later)
    try:
        http.application = make_app(fresh, user=42)
        assert http.get("/signin").text == "sent"
        [alias] = later.events
        assert (alias["type"], alias["userId"]) == ("alias", "42")
        assert fresh.stats().dropped == {}
    finally:
        fresh.shutdown(timeout=5)


def test_a_choice_in_one_browser_is_not_another_browsers(
    client: Client, recorder: Recorder
) -> None:
    # User 42 accepts in browser A; their browser B, in the same process, made no choice.
    app = make_app(client, user=42)
    accept(app)
    before = len(recorder.events)
    assert app.test_client().get("/buy").status_code == 200
    assert recorder.events[before:] == []
    assert client.stats().dropped["no_consent"] == 1
    assert client.consent_state("42") is None  # the choice is browser A's cookie's alone


def test_reject_sends_the_choice_and_nothing_else(client: Client, recorder: Recorder) -> None:
    app = make_app(client, page_views=True)
    http = app.test_client()
    answer = http.post("/journeykit/consent", data={"choice": "reject"})
    assert answer.status_code == 303
    assert "jk_aid" not in set_cookies(answer.headers.getlist("Set-Cookie"))
    http.get("/buy")
    assert track_events(recorder.events) == []
    [message] = consent_messages(recorder.events)
    assert set(message["properties"]["purposes"].values()) == {False}


def test_withdrawal_deletes_the_anonymous_id_cookie(client: Client, recorder: Recorder) -> None:
    http, _ = accept(make_app(client))
    answer = http.post("/journeykit/consent", data={"choice": "reject"})
    cookies = set_cookies(answer.headers.getlist("Set-Cookie"))
    assert cookies["jk_aid"]["max-age"] == "0"
    first, second = consent_messages(recorder.events)
    assert first["anonymousId"] == second["anonymousId"]  # the withdrawal reaches the same subject


def test_reset_at_sign_out_gives_the_browser_a_new_anonymous_id(
    client: Client, recorder: Recorder
) -> None:
    http, answer = accept(make_app(client))
    before = set_cookies(answer.headers.getlist("Set-Cookie"))["jk_aid"]["value"]
    out = http.post("/logout")
    cookie = set_cookies(out.headers.getlist("Set-Cookie"))["jk_aid"]
    assert_private_flags(cookie)
    after = cookie["value"]
    assert after != before
    http.get("/buy")
    by_name = {e.get("event"): e for e in recorder.events}
    assert by_name["Signed Out"]["anonymousId"] == before  # the sign-out is the last one's
    assert by_name["Logged Out Page Viewed"]["anonymousId"] == after
    assert by_name["Product Viewed"]["anonymousId"] == after
    assert http.get("/who").get_json()["anonymous_id"] == after


def test_reset_without_consent_stores_no_id(client: Client, recorder: Recorder) -> None:
    out = make_app(client).test_client().post("/logout")
    assert "jk_aid" not in set_cookies(out.headers.getlist("Set-Cookie"))
    assert recorder.requests == []


def test_reset_keeps_an_anonymous_id_the_proxy_owns(client: Client, recorder: Recorder) -> None:
    app = make_app(client, anonymous_id_header="X-Anonymous-Id")
    http, _ = accept(app)
    out = http.post("/logout", headers={"X-Anonymous-Id": "proxy-owned-id-1"})
    assert "jk_aid" not in set_cookies(out.headers.getlist("Set-Cookie"))
    assert {e["anonymousId"] for e in recorder.events if e.get("event") == "Signed Out"} == {
        "proxy-owned-id-1"
    }
    [after] = [e for e in recorder.events if e.get("event") == "Logged Out Page Viewed"]
    assert after["anonymousId"] == "proxy-owned-id-1"


def test_gpc_denies_marketing_and_strips_its_fields(client: Client, recorder: Recorder) -> None:
    http, _ = accept(make_app(client), **{"Sec-GPC": "1"})
    [message] = consent_messages(recorder.events)
    assert message["properties"]["purposes"]["marketing"] is False
    http.get("/buy", headers={"Sec-GPC": "1", "User-Agent": "pytest-browser"})
    [viewed] = [e for e in recorder.events if e.get("event") == "Product Viewed"]
    assert "userAgent" not in viewed["context"]
    assert "ip" not in viewed["context"]
    assert viewed["context"]["consent"]["categoryPreferences"]["Marketing"] is False


def test_page_views_follow_include_and_exclude(client: Client, recorder: Recorder) -> None:
    http, _ = accept(make_app(client, page_views=True))
    http.get("/buy")
    http.get("/static/app.css")
    pages = [e["properties"]["path"] for e in recorder.events if e["type"] == "page"]
    assert pages == ["/buy"]


def test_cookie_flags_are_configurable_for_local_development(
    client: Client, recorder: Recorder
) -> None:
    _, answer = accept(make_app(client, cookie_secure=False))
    for cookie in set_cookies(answer.headers.getlist("Set-Cookie")).values():
        assert_private_flags(cookie, secure=False)


def test_identity_headers_are_not_trusted_by_default(client: Client) -> None:
    http = make_app(client).test_client()
    answer = http.get("/who", headers={"X-User-Id": "admin", "X-Anonymous-Id": "someone-else"})
    assert answer.json["user_id"] is None
    assert answer.json["anonymous_id"] != "someone-else"
    trusting = make_app(client, user_id_header="X-User-Id").test_client()
    assert trusting.get("/who", headers={"X-User-Id": "u-7"}).json["user_id"] == "u-7"


def test_a_malformed_consent_cookie_counts_as_no_choice(client: Client, recorder: Recorder) -> None:
    http = make_app(client).test_client()
    http.set_cookie("jk_consent", base64.urlsafe_b64encode(json.dumps({"v": 9}).encode()).decode())
    http.get("/buy")
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("data", "headers", "status"),
    [
        ({"choice": "maybe"}, {}, 400),
        ({"choice": "save", "purposes": "spying"}, {}, 400),
        ({"choice": "accept"}, {"Origin": "https://evil.example"}, 403),
        ({"choice": "accept"}, {"Sec-Fetch-Site": "cross-site"}, 403),
    ],
)
def test_bad_banner_posts_are_refused(
    client: Client, recorder: Recorder, data: dict[str, str], headers: dict[str, str], status: int
) -> None:
    answer = make_app(client).test_client().post("/journeykit/consent", data=data, headers=headers)
    assert answer.status_code == status
    assert recorder.requests == []
    assert answer.headers.getlist("Set-Cookie") == []


def test_next_is_never_an_open_redirect(client: Client) -> None:
    http = make_app(client).test_client()
    answer = http.post("/journeykit/consent", data={"choice": "reject", "next": "//evil.example/"})
    assert answer.headers["Location"] == "/"
