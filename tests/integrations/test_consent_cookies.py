"""Consent read from other consent managers' cookies (Segment, OneTrust), framework-free."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from helpers import Recorder

from journeykit.consent import ConsentState, ConsentUpdate, Purpose, Regime, Source
from journeykit.sdk import Client
from journeykit.sdk.integrations import IntegrationSettings, RequestInfo, RequestTracker
from journeykit.sdk.integrations._cookies import encode_consent_cookie

SEGMENT = quote(json.dumps({"version": 1, "custom": {"marketingAndAnalytics": True}}))
SEGMENT_NO = quote(json.dumps({"version": 1, "custom": {"marketingAndAnalytics": False}}))
ONETRUST = quote("isGpcEnabled=0&groups=C0001:1,C0002:1,C0003:0,C0004:0")
ONETRUST_NO = quote("groups=C0001:1,C0002:0")


@pytest.mark.parametrize(
    ("fmt", "name", "value", "sent"),
    [
        ("segment", "tracking-preferences", SEGMENT, True),
        ("segment", "tracking-preferences", SEGMENT_NO, False),
        ("segment", "tracking-preferences", "not json", False),
        ("onetrust", "OptanonConsent", ONETRUST, True),
        ("onetrust", "OptanonConsent", ONETRUST_NO, False),
        ("onetrust", "OptanonConsent", "groups=C0002:yes", False),
    ],
)
def test_other_consent_managers(
    client: Client, recorder: Recorder, fmt: str, name: str, value: str, sent: bool
) -> None:
    settings = IntegrationSettings(consent_cookie_format=fmt, consent_cookie=name)
    request = RequestInfo("GET", "https", "shop.test", "/", cookies={name: value})
    tracker = RequestTracker(client, settings, request)
    assert bool(tracker.track("Product Viewed")) is sent
    assert len(recorder.events) == int(sent)
    assert tracker.needs_banner is (tracker.consent is None)
    if value in ("not json", "groups=C0002:yes"):
        assert tracker.consent_cookie_error is not None
    if sent:
        # The cookie belongs to its consent manager: a choice here sends, but never writes it.
        tracker.record_consent(denied=["analytics"])
        assert name not in {op.name for op in tracker.cookie_ops()}


@pytest.mark.parametrize(
    ("fmt", "name", "denial"),
    [("segment", "tracking-preferences", SEGMENT_NO), ("onetrust", "OptanonConsent", ONETRUST_NO)],
)
def test_each_format_reads_its_own_cookie_by_default(
    client: Client, recorder: Recorder, fmt: str, name: str, denial: str
) -> None:
    # Under opt-out, a denial read from the wrong cookie would leave the visitor tracked.
    settings = IntegrationSettings(consent_cookie_format=fmt, consent_regime="opt_out")
    assert settings.consent_cookie == name
    request = RequestInfo("GET", "https", "shop.test", "/", cookies={name: denial})
    tracker = RequestTracker(client, settings, request)
    assert tracker.consent is not None
    assert tracker.track("Product Viewed").reason == "denied:analytics"
    assert recorder.events == []
    assert IntegrationSettings().consent_cookie == "jk_consent"
    named = IntegrationSettings(consent_cookie_format=fmt, consent_cookie="prefs")
    assert named.consent_cookie == "prefs"


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        ("journeykit", base64.urlsafe_b64encode(b"[" * 1000).decode().rstrip("=")),
        ("segment", "%5B" * 1000),
    ],
)
def test_a_cookie_nested_too_deep_is_no_choice(client: Client, fmt: str, value: str) -> None:
    settings = IntegrationSettings(consent_cookie_format=fmt)
    cookies = {settings.consent_cookie: value}
    request = RequestInfo("GET", "https", "shop.test", "/", cookies=cookies)
    tracker = RequestTracker(client, settings, request)
    assert (tracker.consent, tracker.needs_banner) == (None, True)
    assert tracker.consent_cookie_error is not None


@pytest.mark.parametrize("ahead", [timedelta(seconds=2), timedelta(days=400)])
def test_a_click_wins_over_a_cookie_written_by_a_clock_ahead(
    client: Client, recorder: Recorder, ahead: timedelta
) -> None:
    # Another app server, its clock two seconds ahead, wrote "accept"; the person rejects here.
    accepted = ConsentState.from_update(
        ConsentUpdate(
            purposes={Purpose.ANALYTICS: True, Purpose.MARKETING: True},
            source=Source.BANNER,
            timestamp=datetime.now(UTC) + ahead,
        ),
        Regime.OPT_IN,
    )
    settings = IntegrationSettings()
    cookies = {"jk_consent": encode_consent_cookie(accepted)}
    request = RequestInfo("GET", "https", "s.test", "/", cookies=cookies)
    tracker = RequestTracker(client, settings, request)
    assert tracker.allows("analytics")
    tracker.record_consent(denied=["analytics", "marketing"])
    assert not tracker.allows("analytics")
    written = {op.name: op for op in tracker.cookie_ops()}
    value = written["jk_consent"].value or ""
    later = RequestInfo("GET", "https", "s.test", "/", cookies={"jk_consent": value})
    assert not RequestTracker(client, settings, later).allows("analytics")
    [event] = recorder.events
    sent = datetime.fromisoformat(event["timestamp"])
    assert sent > accepted.timestamp if ahead.days == 0 else sent < accepted.timestamp


def _choice(analytics: bool, at: datetime) -> str:
    update = ConsentUpdate(purposes={Purpose.ANALYTICS: analytics}, source="banner", timestamp=at)
    return encode_consent_cookie(ConsentState.from_update(update, Regime.OPT_IN))


@pytest.mark.parametrize("newer_first", [False, True])
def test_of_two_consent_cookies_the_newer_choice_counts(client: Client, newer_first: bool) -> None:
    # The old cookie stays beside the new one after cookie_domain or cookie_path changed;
    # frameworks keep the first (Flask, Starlette) or the last (Django): all must agree.
    now = datetime.now(UTC)
    old, new = _choice(True, now - timedelta(days=3)), _choice(False, now)
    values = [new, old] if newer_first else [old, new]
    header = "; ".join(f"jk_consent={v}" for v in values)
    request = RequestInfo(
        "GET", "https", "s.test", "/", headers=(("cookie", header),), cookies={"jk_consent": old}
    )
    tracker = RequestTracker(client, IntegrationSettings(), request)
    assert tracker.consent is not None
    assert not tracker.allows("analytics")
