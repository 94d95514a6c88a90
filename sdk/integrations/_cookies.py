"""The consent and cookie policy of a web integration, free of any framework.

Reads the consent-manager cookie (ours, Segment's ``tracking-preferences``, OneTrust's
``OptanonConsent``) and ``Sec-GPC`` into one :class:`ConsentState`, writes our own consent cookie,
and decides when the anonymous id cookie may exist. A cookie that cannot be read is treated as
absent (the banner is shown again), never as consent; the reason is kept for the application.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote

from journeykit.consent import (
    ALL_PURPOSES,
    ConsentError,
    ConsentState,
    ConsentUpdate,
    Purpose,
    Source,
    parse_gpc,
    parse_purpose,
    parse_rudderstack,
    parse_segment,
)
from journeykit.sdk.integrations._request import cookie_pairs
from journeykit.sdk.integrations._settings import IntegrationSettings

__all__ = [
    "CONSENTABLE",
    "CookieOp",
    "banner_choice",
    "category_preferences",
    "encode_consent_cookie",
    "read_consent",
]

CONSENTABLE: tuple[Purpose, ...] = tuple(p for p in ALL_PURPOSES if p is not Purpose.NECESSARY)

# Our own cookie: base64url of compact JSON, so it needs no quoting in any framework.
_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# The Segment category names that DEFAULT_CATEGORIES maps back to exactly one purpose each.
_CATEGORY = {
    Purpose.ANALYTICS: "Analytics",
    Purpose.PERSONALIZATION: "Personalization",
    Purpose.MARKETING: "Marketing",
}


@dataclass(frozen=True, slots=True)
class CookieOp:
    """A cookie to set on the response (``value=None`` deletes it), with the policy's flags."""

    name: str
    value: str | None
    max_age: int
    secure: bool
    httponly: bool
    samesite: str
    domain: str | None
    path: str

    @classmethod
    def make(
        cls, settings: IntegrationSettings, name: str, value: str | None, max_age: int
    ) -> CookieOp:
        """An operation on cookie ``name`` with the flags of ``settings``."""
        return cls(
            name=name,
            value=value,
            max_age=0 if value is None else max_age,
            secure=settings.cookie_secure,
            httponly=settings.cookie_httponly,
            samesite=settings.cookie_samesite,
            domain=settings.cookie_domain,
            path=settings.cookie_path,
        )

    def header(self) -> str:
        """The ``Set-Cookie`` header value (for ASGI, which has no cookie API of its own)."""
        parts = [f"{self.name}={self.value or ''}", f"Max-Age={self.max_age}", f"Path={self.path}"]
        if self.value is None:
            parts.append("expires=Thu, 01 Jan 1970 00:00:00 GMT")
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.secure:
            parts.append("Secure")
        if self.httponly:
            parts.append("HttpOnly")
        parts.append(f"SameSite={self.samesite}")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class ReadConsent:
    """The consent found in a request, and why its cookie was ignored, if it was."""

    state: ConsentState | None
    from_cookie: bool
    gpc: bool
    cookie_error: str | None = None


_UNREADABLE = (ValueError, TypeError, OverflowError, OSError, RecursionError)
"""What reading a consent cookie may raise (binascii.Error is a ValueError; RecursionError:
JSON nested a thousand deep): the cookie is then no choice."""


def read_consent(
    settings: IntegrationSettings,
    cookies: Mapping[str, str],
    headers: Iterable[tuple[str, str]],
    now: datetime,
) -> ReadConsent:
    """The consent in force for one request: the cookie's choice, then ``Sec-GPC`` on top."""
    state: ConsentState | None = None
    error = None
    headers = list(headers)
    raw = _newest(settings, now, headers) or cookies.get(settings.consent_cookie)
    if raw:
        try:
            update = _parse_cookie(settings, raw, now)
        except _UNREADABLE as exc:
            error = f"{settings.consent_cookie}: {exc}"
        else:
            if update is not None:
                state = ConsentState.from_update(update, settings.consent_regime)
    from_cookie = state is not None
    gpc = False
    if settings.honor_gpc:
        # GPC is stamped no earlier than the cookie's choice, so a tie is decided for the denial.
        stamp = max(now, state.timestamp) if state is not None and state.timestamp else now
        signal = parse_gpc(list(headers), now=stamp)
        if signal is not None:
            gpc = True
            base = state or ConsentState(regime=settings.consent_regime)
            state = base.merge(signal)
    return ReadConsent(state, from_cookie, gpc, error)


def _newest(
    settings: IntegrationSettings, now: datetime, headers: Iterable[tuple[str, str]]
) -> str | None:
    """The consent cookie's value when the browser sent it twice, else ``None``.

    A changed ``cookie_domain`` or ``cookie_path`` leaves the old cookie beside the new one,
    and frameworks keep one of the two: Flask and Starlette the first, Django the last. The
    three must agree, and on the newer choice: ours by its time, another format's by the
    browser's order (equal paths: oldest first).
    """
    name = settings.consent_cookie
    values = [value for key, value in cookie_pairs(headers) if key == name]
    if len(values) < 2:
        return None
    if settings.consent_cookie_format != "journeykit":
        return values[-1]
    best: tuple[datetime, str] | None = None
    for value in values:
        try:
            update = _parse_cookie(settings, value, now)
        except _UNREADABLE:
            continue
        if update is not None and (best is None or update.timestamp >= best[0]):
            best = (update.timestamp, value)
    return values[-1] if best is None else best[1]


def encode_consent_cookie(state: ConsentState) -> str:
    """Our consent cookie's value for ``state``: its explicit choices, time and notice version."""
    body: dict[str, Any] = {
        "v": _VERSION,
        "p": {p.value: c.granted for p, c in state.purposes.items()},
        # Microseconds, exactly: processes compare this with the choice they hold in memory.
        "t": ((state.timestamp or datetime.now(UTC)) - _EPOCH) // _MICROSECOND,
    }
    if state.notice_version is not None:
        body["n"] = state.notice_version
    compact = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(compact).rstrip(b"=").decode("ascii")


def category_preferences(state: ConsentState) -> dict[str, bool]:
    """``context.consent.categoryPreferences`` for ``state``, in Segment's shape."""
    return {_CATEGORY[p]: c.granted for p, c in state.purposes.items() if p in _CATEGORY}


def banner_choice(form: Mapping[str, Iterable[str]]) -> tuple[list[Purpose], list[Purpose]]:
    """(granted, denied) from a banner form: ``choice`` accept, reject, or save ``purposes``.

    Raises:
        ValueError: no ``choice``, an unknown one, or an unknown purpose; the message says which.
    """
    choice = next(iter(form.get("choice", ())), "")
    if choice == "accept":
        return list(CONSENTABLE), []
    if choice == "reject":
        return [], list(CONSENTABLE)
    if choice == "save":
        try:
            chosen = {parse_purpose(name, "purposes") for name in form.get("purposes", ())}
        except ConsentError as exc:
            raise ValueError(str(exc)) from None
        granted = [p for p in CONSENTABLE if p in chosen]
        return granted, [p for p in CONSENTABLE if p not in chosen]
    raise ValueError(f"choice must be 'accept', 'reject' or 'save', got {choice[:40]!r}")


def _parse_cookie(settings: IntegrationSettings, raw: str, now: datetime) -> ConsentUpdate | None:
    kind = settings.consent_cookie_format
    if kind == "journeykit":
        return _parse_own(raw)
    if kind == "segment":
        prefs = json.loads(unquote(raw))
        if not isinstance(prefs, dict):
            raise ValueError("expected a JSON object")
        custom = prefs.get("custom")
        if custom is None:
            return None
        message = {"context": {"consent": {"categoryPreferences": custom}}}
        return parse_segment(message, now=now)
    # OneTrust: "...&groups=C0001:1,C0002:0&..." (URL-encoded), through RudderStack's reading.
    fields = dict(parse_qsl(unquote(raw), keep_blank_values=True))
    groups = [g.split(":", 1) for g in fields.get("groups", "").split(",") if g]
    if not groups or any(len(g) != 2 or g[1] not in ("0", "1") for g in groups):
        raise ValueError("expected groups=ID:0|1,...")
    management = {
        "provider": "oneTrust",
        "allowedConsentIds": [g for g, flag in groups if flag == "1"],
        "deniedConsentIds": [g for g, flag in groups if flag == "0"],
    }
    return parse_rudderstack({"context": {"consentManagement": management}}, now=now)


def _parse_own(raw: str) -> ConsentUpdate:
    body = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    if not isinstance(body, dict) or body.get("v") != _VERSION:
        raise ValueError(f"expected version {_VERSION}")
    purposes, stamp, notice = body.get("p"), body.get("t"), body.get("n")
    if not isinstance(purposes, dict) or not all(isinstance(v, bool) for v in purposes.values()):
        raise ValueError("expected purposes as booleans")
    if not isinstance(stamp, int) or isinstance(stamp, bool) or stamp < 0:
        raise ValueError("expected a timestamp")
    if notice is not None and not isinstance(notice, str):
        raise ValueError("expected a notice version string")
    parsed = {parse_purpose(name, "p"): granted for name, granted in purposes.items()}
    return ConsentUpdate(
        purposes={p: g for p, g in parsed.items() if p is not Purpose.NECESSARY},
        source=Source.BANNER,
        timestamp=_EPOCH + stamp * _MICROSECOND,
        notice_version=notice,
    )
