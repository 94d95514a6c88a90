"""What a web integration does, one validated object for Django, Flask and ASGI alike."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from journeykit.consent import Purpose, Regime
from journeykit.sdk import DEFAULT_HOST

__all__ = ["IntegrationSettings"]

_DAY = 24 * 3600

_COOKIE_OF_FORMAT = {
    "journeykit": "jk_consent",
    "segment": "tracking-preferences",
    "onetrust": "OptanonConsent",
}
"""Where each consent manager keeps its choice: the consent cookie's name unless given."""


class IntegrationSettings(BaseModel):
    """Settings of a web integration (Django's ``JOURNEYKIT`` dict, Flask's config, ASGI kwargs).

    The defaults are the private ones: cookies ``HttpOnly``, ``SameSite=Lax`` and ``Secure``;
    the anonymous id cookie only with consent; no personal data, no query strings, no identity
    headers trusted. docs/integrations.md describes every field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # -- the client the integration builds (unless it is given one) ---------------------------
    write_key: str | None = None
    host: str = DEFAULT_HOST
    client_options: dict[str, Any] = Field(default_factory=dict)

    # -- consent --------------------------------------------------------------------------------
    consent_regime: Regime = Regime.OPT_IN
    consent_cookie_format: Literal["journeykit", "segment", "onetrust"] = "journeykit"
    consent_cookie: str = "jk_consent"
    """Name of the cookie the consent is read from (and, in our format, written to); by default
    the format's own: ``jk_consent``, ``tracking-preferences`` or ``OptanonConsent``."""
    consent_max_age: int = Field(default=180 * _DAY, ge=0)
    notice_version: str | None = None
    """Version of the privacy notice the banner shows; recorded with every choice."""
    honor_gpc: bool = True
    send_consent_context: bool = True
    """Attach the consent in force as ``context.consent.categoryPreferences`` to every event."""

    @model_validator(mode="before")
    @classmethod
    def _cookie_of_the_format(cls, data: Any) -> Any:
        # A Segment or OneTrust format read from our cookie's name would find no choice at
        # all, so a visitor who objected there would be tracked under opt-out.
        if isinstance(data, dict) and data.get("consent_cookie") is None:
            cookie = _COOKIE_OF_FORMAT.get(data.get("consent_cookie_format", "journeykit"))
            if cookie is not None:
                data = {**data, "consent_cookie": cookie}
        return data

    # -- identity -------------------------------------------------------------------------------
    anonymous_id_cookie: str = "jk_aid"
    anonymous_id_max_age: int = Field(default=365 * _DAY, ge=0)
    anonymous_id_purpose: Purpose = Purpose.ANALYTICS
    """The anonymous id cookie is set only while this purpose is granted."""
    user_id_header: str | None = None
    """Read the user id from this header. Only for a header your own proxy sets and strips."""
    anonymous_id_header: str | None = None
    """Read the anonymous id from this header, likewise only from a proxy you control."""

    # -- request context ------------------------------------------------------------------------
    include_ip: bool = True
    """``context.ip``; the SDK shortens it, and the gate strips it without marketing consent."""
    include_user_agent: bool = True
    include_query_string: bool = False
    """Query strings often hold emails and tokens, so ``page.url`` and ``search`` omit them."""
    trust_forwarded_for: bool = False
    """Take the client IP from ``X-Forwarded-For`` (only behind a proxy that sets it)."""
    forwarded_hops: int = Field(default=1, ge=1)
    """Proxies of yours that append to ``X-Forwarded-For``: the address is the one the outermost
    of them saw, this many entries from the right (what the client wrote is further left)."""

    # -- automatic page views -------------------------------------------------------------------
    page_views: bool = False
    page_include: tuple[str, ...] = ()
    """Glob patterns of paths to track (``fnmatch``); empty means every path not excluded."""
    page_exclude: tuple[str, ...] = ("/static/*", "/favicon.ico", "/robots.txt")

    # -- cookies --------------------------------------------------------------------------------
    cookie_secure: bool = True
    """Set ``False`` for local development over plain http only."""
    cookie_httponly: bool = True
    cookie_samesite: Literal["Lax", "Strict", "None"] = "Lax"
    cookie_domain: str | None = None
    cookie_path: str = "/"

    # -- the banner's form endpoint (Flask registers it; Django and ASGI apps route it) ----------
    consent_path: str = "/journeykit/consent"
