"""Consent signals in the shapes people send: our event, Segment, RudderStack, GPC."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from journeykit.consent import ConsentError, InvalidConsentSignal, UnknownPurpose
from journeykit.consent.purposes import Purpose
from journeykit.consent.signals import (
    SignalMapping,
    parse_consent_event,
    parse_gpc,
    parse_message,
    parse_rudderstack,
    parse_segment,
)
from journeykit.consent.state import ConsentState, Regime, Source

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
A, M, P = Purpose.ANALYTICS, Purpose.MARKETING, Purpose.PERSONALIZATION


def track(context: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "track",
        "event": "Product Viewed",
        "anonymousId": "anon-1",
        "userId": "user-1",
        "timestamp": "2025-03-01T10:00:00Z",
        "properties": {},
        "context": context or {},
    }
    message.update(extra)
    return message


def segment(prefs: Any) -> dict[str, Any]:
    return track({"consent": {"categoryPreferences": prefs}})


def rudder(**cm: Any) -> dict[str, Any]:
    return track({"consentManagement": {"provider": "oneTrust", **cm}})


def consent_event(**properties: Any) -> dict[str, Any]:
    return track(event="Consent Updated", properties=properties)


# --- our own "Consent Updated" event ------------------------------------------------------------


def test_consent_event_is_parsed_with_source_notice_ids_and_time() -> None:
    message = consent_event(
        purposes={"analytics": True, "marketing": False},
        notice_version="2025-02",
        source="banner",
    )
    update = parse_consent_event(message)
    assert update is not None
    assert dict(update.purposes) == {A: True, M: False}
    assert update.source is Source.BANNER
    assert update.notice_version == "2025-02"
    assert update.user_id == "user-1"
    assert update.anonymous_id == "anon-1"
    assert update.timestamp == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def test_consent_event_source_defaults_to_api_and_time_to_now() -> None:
    message = consent_event(purposes={"personalization": True})
    del message["timestamp"]
    update = parse_consent_event(message, now=NOW)
    assert update is not None
    assert update.source is Source.API
    assert update.timestamp == NOW
    assert update.notice_version is None


def test_other_events_are_not_consent_events() -> None:
    assert parse_consent_event(track()) is None
    assert parse_message(track()) is None


def test_consent_event_with_unknown_purpose_names_field_and_valid_purposes() -> None:
    with pytest.raises(UnknownPurpose) as info:
        parse_consent_event(consent_event(purposes={"ads": True}))
    message = str(info.value)
    assert message.startswith("properties.purposes.ads: unknown purpose 'ads'")
    assert "necessary, analytics, personalization, marketing" in message


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({}, "properties.purposes: expected an object, got None"),
        ({"purposes": ["analytics"]}, "properties.purposes: expected an object, got a list"),
        (
            {"purposes": {"analytics": "yes"}},
            "properties.purposes.analytics: expected a boolean, got 'yes'",
        ),
        (
            {"purposes": {"analytics": True}, "notice_version": 3},
            "properties.notice_version: expected a string, got 3",
        ),
        (
            {"purposes": {"analytics": True}, "source": "email"},
            "properties.source: expected one of banner, api, gpc, import, got 'email'",
        ),
        (
            {"purposes": {"necessary": False}},
            "properties.purposes.necessary: necessary cannot be denied; it is always granted",
        ),
    ],
)
def test_malformed_consent_event_names_the_field(properties: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidConsentSignal) as info:
        parse_consent_event(consent_event(**properties))
    assert str(info.value) == expected
    assert isinstance(info.value, ConsentError)


def test_consent_event_without_properties_names_the_field() -> None:
    message = consent_event()
    message["properties"] = None
    with pytest.raises(InvalidConsentSignal, match=r"^properties: expected an object, got None$"):
        parse_consent_event(message)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("yesterday", "timestamp: expected an ISO 8601 timestamp, got 'yesterday'"),
        ("2025-03-01T10:00:00", "timestamp: expected a timezone, e.g. '...Z' or '+02:00'"),
        (12, "timestamp: expected an ISO 8601 string, got 12"),
    ],
)
def test_bad_timestamps_name_the_field(timestamp: Any, expected: str) -> None:
    message = consent_event(purposes={"analytics": True})
    message["timestamp"] = timestamp
    with pytest.raises(InvalidConsentSignal) as info:
        parse_consent_event(message)
    assert str(info.value) == expected


def test_a_non_object_message_is_refused_clearly() -> None:
    with pytest.raises(InvalidConsentSignal, match=r"^message: expected an object, got a list$"):
        parse_message([])  # type: ignore[arg-type]


# --- Segment categoryPreferences ----------------------------------------------------------------


def test_segment_categories_map_to_purposes_by_default() -> None:
    update = parse_segment(segment({"Analytics": True, "Advertising": False, "C0003": True}))
    assert update is not None
    assert dict(update.purposes) == {A: True, M: False, P: True}
    assert update.source is Source.BANNER
    assert update.ignored == ()


def test_segment_category_names_match_without_regard_to_case() -> None:
    update = parse_segment(segment({"analytics": True, "MARKETING": True}))
    assert update is not None
    assert dict(update.purposes) == {A: True, M: True}


def test_segment_empty_preferences_deny_every_purpose() -> None:
    update = parse_segment(segment({}))
    assert update is not None
    assert dict(update.purposes) == {A: False, P: False, M: False}
    state = ConsentState.from_update(update, Regime.OPT_OUT)
    assert not any(state.is_granted(p) for p in (A, P, M))
    assert state.is_granted(Purpose.NECESSARY)


def test_segment_unmapped_categories_are_ignored_and_reported() -> None:
    update = parse_segment(segment({"Analytics": True, "SocialWidgets": True}))
    assert update is not None
    assert dict(update.purposes) == {A: True}
    assert update.ignored == ("context.consent.categoryPreferences.SocialWidgets",)


def test_segment_denied_necessary_is_reported_not_stored() -> None:
    update = parse_segment(segment({"Necessary": False, "Analytics": True}))
    assert update is not None
    assert dict(update.purposes) == {A: True}
    assert update.ignored == ("context.consent.categoryPreferences.Necessary",)


def test_segment_two_categories_for_one_purpose_disagreeing_deny_it() -> None:
    update = parse_segment(segment({"Analytics": True, "C0002": False}))
    assert update is not None
    assert update.purposes[A] is False


def test_segment_one_category_can_stand_for_two_purposes() -> None:
    update = parse_segment(segment({"marketingAndAnalytics": True}))
    assert update is not None
    assert dict(update.purposes) == {A: True, M: True}


def test_segment_mapping_is_configurable() -> None:
    mapping = SignalMapping(segment_categories={"Stats": "analytics", "Ads": ["marketing"]})
    update = parse_segment(segment({"Stats": True, "Ads": False, "Analytics": True}), mapping)
    assert update is not None
    assert dict(update.purposes) == {A: True, M: False}
    assert update.ignored == ("context.consent.categoryPreferences.Analytics",)


def test_segment_absent_is_no_signal() -> None:
    assert parse_segment(track()) is None
    assert parse_segment(track({"consent": {}})) is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            segment({"Analytics": "yes"}),
            "context.consent.categoryPreferences.Analytics: expected a boolean, got 'yes'",
        ),
        (
            segment(["Analytics"]),
            "context.consent.categoryPreferences: expected an object, got a list",
        ),
        (track({"consent": "all"}), "context.consent: expected an object, got 'all'"),
    ],
)
def test_malformed_segment_names_the_field(message: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidConsentSignal) as info:
        parse_segment(message)
    assert str(info.value) == expected


def test_unknown_purpose_in_mapping_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="segment_categories"):
        SignalMapping(segment_categories={"Stats": "statistics"})


# --- RudderStack consentManagement --------------------------------------------------------------


def test_rudderstack_custom_allowed_ids_grant_and_the_rest_are_denied() -> None:
    cm = {"provider": "custom", "allowedConsentIds": ["C0001", "C0002"], "deniedConsentIds": []}
    update = parse_rudderstack(track({"consentManagement": cm}))
    assert update is not None
    # For a custom provider the allowed list is authoritative: a purpose none of whose ids
    # is allowed is denied.
    assert dict(update.purposes) == {A: True, P: False, M: False}
    assert update.source is Source.BANNER


def test_rudderstack_custom_empty_allowed_list_denies_everything() -> None:
    cm = {"provider": "Custom", "allowedConsentIds": [], "deniedConsentIds": []}
    update = parse_rudderstack(track({"consentManagement": cm}))
    assert update is not None
    assert set(update.purposes.values()) == {False}


def test_rudderstack_onetrust_lists_speak_only_for_the_ids_they_name() -> None:
    # OneTrust: the person declined C0004 (marketing) only; nothing is said of the others.
    update = parse_rudderstack(rudder(allowedConsentIds=[], deniedConsentIds=["C0004"]))
    assert update is not None
    assert dict(update.purposes) == {M: False}
    update = parse_rudderstack(rudder(allowedConsentIds=["C0002"], deniedConsentIds=["C0004"]))
    assert update is not None
    assert dict(update.purposes) == {A: True, M: False}


@pytest.mark.parametrize(
    "cm",
    [
        # RudderStack's JavaScript SDK v3 on every event, consent manager or not
        {"deniedConsentIds": []},
        {},
        {"provider": "oneTrust", "allowedConsentIds": [], "deniedConsentIds": []},
        {"provider": "ketch", "deniedConsentIds": [], "resolutionStrategy": "or"},
        {"provider": "custom", "deniedConsentIds": []},  # custom, but no allowed list
    ],
)
def test_rudderstack_empty_lists_without_an_authoritative_list_are_no_signal(
    cm: dict[str, Any],
) -> None:
    assert parse_rudderstack(track({"consentManagement": cm})) is None


def test_rudderstack_denied_ids_without_allowed_ones_deny_only_those() -> None:
    update = parse_rudderstack(track({"consentManagement": {"deniedConsentIds": ["C0003"]}}))
    assert update is not None
    assert dict(update.purposes) == {P: False}


@pytest.mark.parametrize(("strategy", "granted"), [("and", False), ("or", True), (None, False)])
def test_rudderstack_resolution_strategy_decides_mixed_purposes(
    strategy: str | None, granted: bool
) -> None:
    # "Analytics" and "C0002" both stand for analytics; one is allowed, one denied.
    cm: dict[str, Any] = {"allowedConsentIds": ["Analytics"], "deniedConsentIds": ["C0002"]}
    if strategy is not None:
        cm["resolutionStrategy"] = strategy
    update = parse_rudderstack(rudder(**cm))
    assert update is not None
    assert update.purposes[A] is granted


def test_rudderstack_ids_are_mapped_by_configuration() -> None:
    mapping = SignalMapping(rudderstack_ids={"stats": "analytics", "ads": "marketing"})
    update = parse_rudderstack(
        rudder(allowedConsentIds=["stats", "C0004"], deniedConsentIds=["ads"]), mapping
    )
    assert update is not None
    # personalization has no id in this mapping, so it stays unset.
    assert dict(update.purposes) == {A: True, M: False}
    assert update.ignored == ("context.consentManagement.allowedConsentIds[1]",)


def test_rudderstack_absent_is_no_signal() -> None:
    assert parse_rudderstack(track()) is None


@pytest.mark.parametrize(
    ("cm", "expected"),
    [
        (
            {"allowedConsentIds": "C0002"},
            "context.consentManagement.allowedConsentIds: expected a list of strings, got 'C0002'",
        ),
        (
            {"deniedConsentIds": ["C0002", 4]},
            "context.consentManagement.deniedConsentIds[1]: expected a string, got 4",
        ),
        (
            {"resolutionStrategy": "xor"},
            "context.consentManagement.resolutionStrategy: expected 'and' or 'or', got 'xor'",
        ),
        ({"provider": 7}, "context.consentManagement.provider: expected a string, got 7"),
        (
            {"allowedConsentIds": ["C0002"], "deniedConsentIds": ["C0002"]},
            "context.consentManagement: consent id 'C0002' is both allowed and denied",
        ),
    ],
)
def test_malformed_rudderstack_names_the_field(cm: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidConsentSignal) as info:
        parse_rudderstack(rudder(**cm))
    assert str(info.value) == expected


# --- Sec-GPC ------------------------------------------------------------------------------------


def test_gpc_header_denies_marketing_for_the_device_and_profile() -> None:
    update = parse_gpc({"Sec-GPC": "1"}, user_id="u", anonymous_id="a", now=NOW)
    assert update is not None
    assert dict(update.purposes) == {M: False}
    assert update.source is Source.GPC
    assert (update.user_id, update.anonymous_id, update.timestamp) == ("u", "a", NOW)


def test_gpc_header_name_is_case_insensitive_and_pairs_work() -> None:
    assert parse_gpc([("sec-gpc", " 1 ")]) is not None


@pytest.mark.parametrize("headers", [{}, {"Sec-GPC": "0"}, {"Sec-GPC": "true"}, {"DNT": "1"}])
def test_anything_but_sec_gpc_1_is_no_signal(headers: dict[str, str]) -> None:
    assert parse_gpc(headers) is None


def test_gpc_refuses_a_naive_now() -> None:
    with pytest.raises(InvalidConsentSignal, match=r"^now: "):
        parse_gpc({"Sec-GPC": "1"}, now=datetime(2025, 1, 1))


# --- one entry point ----------------------------------------------------------------------------


def test_parse_message_prefers_the_explicit_event_then_segment_then_rudderstack() -> None:
    both = track(
        {
            "consent": {"categoryPreferences": {"Analytics": False}},
            "consentManagement": {"allowedConsentIds": ["C0002"]},
        }
    )
    update = parse_message(both)
    assert update is not None
    assert update.purposes[A] is False  # Segment's answer
    del both["context"]["consent"]
    update = parse_message(both)
    assert update is not None
    assert update.purposes[A] is True  # RudderStack's answer
    explicit = consent_event(purposes={"analytics": True})
    explicit["context"] = {"consent": {"categoryPreferences": {}}}
    update = parse_message(explicit)
    assert update is not None
    assert dict(update.purposes) == {A: True}


def test_parsers_do_not_mutate_their_input() -> None:
    messages = [
        segment({"Analytics": True, "Foo": False}),
        rudder(allowedConsentIds=["C0002"], deniedConsentIds=["C0004"]),
        consent_event(purposes={"analytics": True}),
    ]
    before = copy.deepcopy(messages)
    for message in messages:
        parse_message(message)
    assert messages == before


def test_one_purpose_named_twice_with_two_answers_is_refused() -> None:
    # Taking the last answer would turn the refusal into consent.
    message = {
        "type": "track",
        "event": "Consent Updated",
        "properties": {"purposes": {"marketing": False, "Marketing": True}},
    }
    with pytest.raises(InvalidConsentSignal, match="marketing is both granted and denied"):
        parse_consent_event(message)
    same = {**message, "properties": {"purposes": {"marketing": False, "Marketing": False}}}
    update = parse_consent_event(same)
    assert update is not None
    assert update.purposes == {Purpose.MARKETING: False}


def test_a_consent_id_allowed_and_denied_in_another_case_is_refused() -> None:
    management = {
        "provider": "oneTrust",
        "resolutionStrategy": "or",
        "allowedConsentIds": ["C0004"],
        "deniedConsentIds": ["c0004"],
    }
    with pytest.raises(InvalidConsentSignal, match="both allowed and denied"):
        parse_rudderstack({"context": {"consentManagement": management}})
