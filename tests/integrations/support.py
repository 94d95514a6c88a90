"""Helpers shared by the Flask, Django and ASGI tests: the same privacy promises everywhere."""

from __future__ import annotations

from typing import Any

import httpx
from helpers import PSEUDONYM_KEY, WRITE_KEY, Recorder

from journeykit.sdk import Client
from journeykit.sdk.integrations import request_consent


def recording_client(recorder: Recorder, **options: Any) -> Client:
    """A client as the integrations build it, delivering on the caller's thread to ``recorder``."""
    settings: dict[str, Any] = {"sync_mode": True, "strict": True, **options}
    return Client(
        WRITE_KEY,
        host="http://collector.test",
        transport=httpx.MockTransport(recorder),
        consent_resolver=request_consent,
        pseudonym_key=PSEUDONYM_KEY,
        **settings,
    )


def set_cookies(headers: list[str]) -> dict[str, dict[str, Any]]:
    """Set-Cookie header values by cookie name: value and flags, names in lower case."""
    out: dict[str, dict[str, Any]] = {}
    for header in headers:
        name, _, rest = header.partition("=")
        value, _, attrs = rest.partition(";")
        flags: dict[str, Any] = {"value": value}
        for attr in attrs.split(";"):
            key, _, val = attr.strip().partition("=")
            if key:
                flags[key.lower()] = val or True
        out[name.strip()] = flags
    return out


def assert_private_flags(cookie: dict[str, Any], secure: bool = True) -> None:
    assert cookie.get("httponly") is True
    assert str(cookie.get("samesite")).lower() == "lax"
    assert (cookie.get("secure") is True) is secure


def track_events(events: list[dict[str, Any]]) -> list[str]:
    """The names of the analytics events, leaving consent messages aside."""
    return [e.get("event") or e["type"] for e in events if e.get("event") != "Consent Updated"]


def consent_messages(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == "Consent Updated"]
