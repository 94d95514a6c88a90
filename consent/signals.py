"""Read consent from the shapes people already send, each into a :class:`ConsentUpdate`.

Four shapes are understood (docs/consent.md shows each with an example):

- our own explicit ``track`` event ``"Consent Updated"`` (:func:`parse_consent_event`);
- Segment's ``context.consent.categoryPreferences`` (:func:`parse_segment`);
- RudderStack's ``context.consentManagement`` (:func:`parse_rudderstack`);
- the browser's ``Sec-GPC: 1`` header (:func:`parse_gpc`).

Category names and consent ids are mapped to purposes by a :class:`SignalMapping`. Every parser
returns ``None`` when its shape is absent and raises :class:`InvalidConsentSignal` (naming the
field) when it is present but malformed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from journeykit.consent.errors import InvalidConsentSignal
from journeykit.consent.purposes import ALL_PURPOSES, Purpose, parse_purpose
from journeykit.consent.state import ConsentUpdate, Source

__all__ = [
    "CONSENT_EVENT",
    "DEFAULT_CATEGORIES",
    "SignalMapping",
    "is_consent_event",
    "parse_consent_event",
    "parse_gpc",
    "parse_message",
    "parse_rudderstack",
    "parse_segment",
]

CONSENT_EVENT: Final = "Consent Updated"
"""Name of our own explicit consent event (a ``track`` message)."""

_N, _A, _P, _M = (
    Purpose.NECESSARY,
    Purpose.ANALYTICS,
    Purpose.PERSONALIZATION,
    Purpose.MARKETING,
)

DEFAULT_CATEGORIES: Final[Mapping[str, tuple[Purpose, ...]]] = {
    # Plain names, as in Segment's Consent Management and most banners.
    "Necessary": (_N,),
    "Strictly Necessary": (_N,),
    "Analytics": (_A,),
    "Performance": (_A,),
    "Functional": (_P,),
    "Personalization": (_P,),
    "Advertising": (_M,),
    "Marketing": (_M,),
    "Targeting": (_M,),
    # Segment's older consent-manager category, one switch for two purposes.
    "marketingAndAnalytics": (_A, _M),
    # OneTrust's default category ids: C0005 is social-media cookies, which track for ads.
    "C0001": (_N,),
    "C0002": (_A,),
    "C0003": (_P,),
    "C0004": (_M,),
    "C0005": (_M,),
}
"""Default category name / consent id -> purposes, matched without regard to case."""


class SignalMapping(BaseModel):
    """How category names (Segment) and consent ids (RudderStack) map to purposes.

    Keys match without regard to case (``"analytics"`` finds ``"Analytics"``). A value is one
    purpose or several (a single "marketing and analytics" switch). Keys not listed are ignored
    and reported in :attr:`ConsentUpdate.ignored`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    segment_categories: Mapping[str, tuple[Purpose, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_CATEGORIES), validate_default=True
    )
    rudderstack_ids: Mapping[str, tuple[Purpose, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_CATEGORIES), validate_default=True
    )

    @field_validator("segment_categories", "rudderstack_ids", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: (v,) if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("segment_categories", "rudderstack_ids")
    @classmethod
    def _casefold(cls, value: Mapping[str, tuple[Purpose, ...]]) -> dict[str, tuple[Purpose, ...]]:
        return {k.strip().casefold(): v for k, v in value.items()}

    def lookup(self, table: Mapping[str, tuple[Purpose, ...]], key: str) -> tuple[Purpose, ...]:
        """Purposes for ``key`` in ``table`` (one of this mapping's tables); ``()`` if unmapped."""
        return table.get(key.strip().casefold(), ())


_DEFAULT_MAPPING: Final = SignalMapping()


def is_consent_event(message: Mapping[str, Any]) -> bool:
    """Whether ``message`` is our explicit ``track`` ``"Consent Updated"`` event."""
    return message.get("type") == "track" and message.get("event") == CONSENT_EVENT


def parse_message(
    message: Mapping[str, Any],
    mapping: SignalMapping = _DEFAULT_MAPPING,
    *,
    now: datetime | None = None,
) -> ConsentUpdate | None:
    """The consent signal carried by ``message``, whichever shape it is in, or ``None``.

    When a message carries more than one shape, the most explicit wins: our own "Consent
    Updated" event, then Segment's categoryPreferences, then RudderStack's consentManagement.
    ``Sec-GPC`` travels in an HTTP header, not in the message: see :func:`parse_gpc`.
    """
    context = message.get("context") if type(message) is dict else None
    if (
        type(message) is dict
        and message.get("event") != CONSENT_EVENT
        and not (
            # The common case on a collector: no signal at all, told apart with two lookups.
            type(context) is dict and ("consent" in context or "consentManagement" in context)
        )
    ):
        return None
    return (
        parse_consent_event(message, now=now)
        or parse_segment(message, mapping, now=now)
        or parse_rudderstack(message, mapping, now=now)
    )


def parse_consent_event(
    message: Mapping[str, Any], *, now: datetime | None = None
) -> ConsentUpdate | None:
    """Parse our own event: ``properties`` ``{"purposes": {...}, "notice_version", "source"}``.

    ``source`` defaults to ``api``; ``notice_version`` is optional but should be sent, because
    it records what the person was told.
    """
    _require_object(message, "message")
    if not is_consent_event(message):
        return None
    props = _require_object(message.get("properties"), "properties")
    raw = _require_object(props.get("purposes"), "properties.purposes")
    purposes: dict[Purpose, bool] = {}
    for name, value in raw.items():
        field = f"properties.purposes.{name}"
        purpose = parse_purpose(name, field)
        choice = _require_bool(value, field)
        if purposes.get(purpose, choice) != choice:
            # {"marketing": false, "Marketing": true}: one purpose, two answers; taking the
            # last would turn a refusal into consent.
            raise InvalidConsentSignal(field, f"{purpose.value} is both granted and denied")
        purposes[purpose] = choice
        if purpose is Purpose.NECESSARY and not purposes[purpose]:
            raise InvalidConsentSignal(field, "necessary cannot be denied; it is always granted")
    notice = props.get("notice_version")
    if notice is not None and not isinstance(notice, str):
        raise InvalidConsentSignal(
            "properties.notice_version", f"expected a string, got {_show(notice)}"
        )
    source = props.get("source", Source.API.value)
    if source not in {s.value for s in Source}:
        valid = ", ".join(s.value for s in Source)
        raise InvalidConsentSignal(
            "properties.source", f"expected one of {valid}, got {_show(source)}"
        )
    return _update(message, purposes, Source(source), now, notice_version=notice)


def parse_segment(
    message: Mapping[str, Any],
    mapping: SignalMapping = _DEFAULT_MAPPING,
    *,
    now: datetime | None = None,
) -> ConsentUpdate | None:
    """Parse ``context.consent.categoryPreferences`` (category name -> bool).

    An empty object means the person denied everything. Categories that map to nothing are
    ignored and reported. If two categories speak for one purpose and disagree, denied wins.
    """
    _require_object(message, "message")
    context = message.get("context")
    if not isinstance(context, Mapping) or "consent" not in context:
        return None
    consent = _require_object(context["consent"], "context.consent")
    if "categoryPreferences" not in consent:
        return None
    base = "context.consent.categoryPreferences"
    prefs = _require_object(consent["categoryPreferences"], base)
    if not prefs:
        return _update(message, dict.fromkeys(_CONSENTABLE, False), Source.BANNER, now)
    purposes: dict[Purpose, bool] = {}
    ignored: list[str] = []
    for name, value in prefs.items():
        field = f"{base}.{name}"
        granted = _require_bool(value, field)
        targets = mapping.lookup(mapping.segment_categories, str(name))
        if not targets or (targets == (Purpose.NECESSARY,) and not granted):
            ignored.append(field)
        for purpose in targets:
            purposes[purpose] = purposes.get(purpose, True) and granted
    return _update(message, purposes, Source.BANNER, now, ignored=ignored)


def parse_rudderstack(
    message: Mapping[str, Any],
    mapping: SignalMapping = _DEFAULT_MAPPING,
    *,
    now: datetime | None = None,
) -> ConsentUpdate | None:
    """Parse ``context.consentManagement`` (allowed/denied consent ids, resolution strategy).

    As RudderStack resolves them, the lists mean what the provider says:

    - ``"provider": "custom"`` with ``allowedConsentIds``: the allowed list is authoritative,
      a purpose none of whose ids is allowed is denied (so an empty list denies everything).
    - Any other provider (OneTrust, Ketch, iubenda) or none: each list speaks only for the ids
      it names. A purpose with a denied id is denied, one with an allowed id granted; a purpose
      neither names stays as it was, and two empty lists are no signal (``None``).
      RudderStack's JavaScript SDK adds ``{"deniedConsentIds": []}`` to every event, with no
      consent manager configured too: that is no refusal.

    For a purpose with ids in both lists, ``"or"`` grants it (one allowed id is enough) and
    ``"and"`` (the default) denies it (every id mentioned must be allowed). Purposes the mapping
    has no id for are left unset; ids it does not know are ignored and reported.
    """
    _require_object(message, "message")
    context = message.get("context")
    if not isinstance(context, Mapping) or "consentManagement" not in context:
        return None
    base = "context.consentManagement"
    cm = _require_object(context["consentManagement"], base)
    provider = cm.get("provider")
    if provider is not None and not isinstance(provider, str):
        raise InvalidConsentSignal(f"{base}.provider", f"expected a string, got {_show(provider)}")
    strategy = cm.get("resolutionStrategy", "and")
    if strategy not in ("and", "or"):
        raise InvalidConsentSignal(
            f"{base}.resolutionStrategy", f"expected 'and' or 'or', got {_show(strategy)}"
        )
    allowed = _require_ids(cm.get("allowedConsentIds", []), f"{base}.allowedConsentIds")
    denied = _require_ids(cm.get("deniedConsentIds", []), f"{base}.deniedConsentIds")
    authoritative = (
        provider is not None and provider.casefold() == "custom" and "allowedConsentIds" in cm
    )
    if not authoritative and not allowed and not denied:
        return None
    # Consent ids are matched without regard to case below, so they are compared so here.
    refused = {i.strip().casefold() for i in denied}
    both = sorted(i for i in allowed if i.strip().casefold() in refused)
    if both:
        raise InvalidConsentSignal(base, f"consent id {both[0]!r} is both allowed and denied")

    table = mapping.rudderstack_ids
    allowed_for: set[Purpose] = set()
    denied_for: set[Purpose] = set()
    ignored: list[str] = []
    for ids, into, field in (
        (allowed, allowed_for, "allowedConsentIds"),
        (denied, denied_for, "deniedConsentIds"),
    ):
        for index, consent_id in enumerate(ids):
            targets = mapping.lookup(table, consent_id)
            if not targets or (targets == (Purpose.NECESSARY,) and into is denied_for):
                ignored.append(f"{base}.{field}[{index}]")
            into.update(targets)
    configured = {p for targets in table.values() for p in targets}
    purposes: dict[Purpose, bool] = {}
    for purpose in _CONSENTABLE:
        if purpose not in configured:
            continue
        if not authoritative and purpose not in allowed_for and purpose not in denied_for:
            continue  # neither list names it: no statement about it
        if strategy == "or":
            purposes[purpose] = purpose in allowed_for
        else:
            purposes[purpose] = purpose in allowed_for and purpose not in denied_for
    return _update(message, purposes, Source.BANNER, now, ignored=ignored)


def parse_gpc(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    *,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    now: datetime | None = None,
) -> ConsentUpdate | None:
    """``Sec-GPC: 1`` means marketing denied (source ``gpc``) for this device and profile.

    Args:
        headers: the request headers, a mapping or (name, value) pairs; names match without
            regard to case. Any value other than ``1`` is no signal, as the GPC spec says.
        user_id: the profile the request belongs to, if known.
        anonymous_id: the device the request belongs to, if known.
        now: time of the request; defaults to the current time.
    """
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if isinstance(name, str) and name.lower() == "sec-gpc":
            if isinstance(value, str) and value.strip() == "1":
                return ConsentUpdate(
                    purposes={Purpose.MARKETING: False},
                    source=Source.GPC,
                    timestamp=_aware(now, "now"),
                    user_id=user_id,
                    anonymous_id=anonymous_id,
                )
            return None
    return None


_CONSENTABLE: Final = tuple(p for p in ALL_PURPOSES if p is not Purpose.NECESSARY)


def _update(
    message: Mapping[str, Any],
    purposes: Mapping[Purpose, bool],
    source: Source,
    now: datetime | None,
    *,
    notice_version: str | None = None,
    ignored: Iterable[str] = (),
) -> ConsentUpdate:
    # necessary is always granted, so it is never stored; parsers report a "denied" for it.
    kept: dict[Purpose, bool] = {p: g for p, g in purposes.items() if p is not Purpose.NECESSARY}
    return ConsentUpdate(
        purposes=kept,
        source=source,
        timestamp=_timestamp(message, now),
        notice_version=notice_version,
        user_id=_optional_id(message, "userId"),
        anonymous_id=_optional_id(message, "anonymousId"),
        ignored=tuple(ignored),
    )


def _timestamp(message: Mapping[str, Any], now: datetime | None) -> datetime:
    raw = message.get("timestamp")
    if raw is None:
        return _aware(now, "now")
    if isinstance(raw, datetime):
        parsed = raw
    elif isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidConsentSignal(
                "timestamp", f"expected an ISO 8601 timestamp, got {_show(raw)}"
            ) from None
    else:
        raise InvalidConsentSignal("timestamp", f"expected an ISO 8601 string, got {_show(raw)}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidConsentSignal("timestamp", "expected a timezone, e.g. '...Z' or '+02:00'")
    return parsed


def _aware(now: datetime | None, field: str) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidConsentSignal(field, "expected a timezone-aware datetime")
    return now


def _optional_id(message: Mapping[str, Any], key: str) -> str | None:
    value = message.get(key)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str | int):
        return str(value)
    raise InvalidConsentSignal(key, f"expected a string, got {_show(value)}")


def _require_object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidConsentSignal(field, f"expected an object, got {_show(value)}")
    return value


def _require_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidConsentSignal(field, f"expected a boolean, got {_show(value)}")
    return value


def _require_ids(value: Any, field: str) -> list[str]:
    if not isinstance(value, list):
        raise InvalidConsentSignal(field, f"expected a list of strings, got {_show(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidConsentSignal(f"{field}[{index}]", f"expected a string, got {_show(item)}")
    return value


def _show(value: Any) -> str:
    """A value for an error message: short, and typed when it is not a plain scalar."""
    if value is None or isinstance(value, bool | int | float | str):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return f"a {type(value).__name__}"
