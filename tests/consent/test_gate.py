"""The consent gate: allow, strip or drop, with a reason code, under both regimes."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from journeykit.consent import ConsentError
from journeykit.consent.gate import (
    REASON_CODES,
    Action,
    GatePolicy,
    decide,
    may_personalize,
)
from journeykit.consent.purposes import Purpose
from journeykit.consent.state import ConsentState, ConsentUpdate, Regime, Source

NOW = datetime(2025, 3, 1, tzinfo=UTC)


def state(regime: Regime = Regime.OPT_IN, **purposes: bool) -> ConsentState:
    update = ConsentUpdate(
        purposes={Purpose(k): v for k, v in purposes.items()}, source=Source.API, timestamp=NOW
    )
    return ConsentState.from_update(update, regime)


def message(kind: str = "track", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": kind,
        "anonymousId": "a1",
        "properties": {"plan": "pro"},
        "context": {
            "ip": "203.0.113.9",
            "userAgent": "Mozilla/5.0",
            "device": {"id": "dev-1", "advertisingId": "ad-1"},
            "library": {"name": "journeykit"},
        },
    }
    if kind == "track":
        out["event"] = "Signed Up"
    out.update(extra)
    return out


@pytest.mark.parametrize("kind", ["track", "page", "screen", "identify", "group", "alias"])
def test_opt_in_without_state_drops_with_no_consent(kind: str) -> None:
    decision = decide(None, message(kind))
    assert (decision.action, decision.reason, decision.message) == (Action.DROP, "no_consent", None)


@pytest.mark.parametrize("kind", ["track", "page", "screen", "identify", "group", "alias"])
def test_opt_out_without_state_allows(kind: str) -> None:
    msg = message(kind)
    decision = decide(None, msg, GatePolicy(regime=Regime.OPT_OUT))
    assert (decision.action, decision.reason) == (Action.ALLOW, "opt_out_default")
    assert decision.message is msg


@pytest.mark.parametrize("kind", ["track", "page", "screen", "identify", "group", "alias"])
def test_every_message_type_needs_analytics(kind: str) -> None:
    decision = decide(state(analytics=False, marketing=True), message(kind))
    assert (decision.action, decision.reason) == (Action.DROP, "denied:analytics")


def test_unset_analytics_under_opt_in_is_denied() -> None:
    decision = decide(state(marketing=True), message())
    assert (decision.action, decision.reason) == (Action.DROP, "denied:analytics")


def test_unset_analytics_under_opt_out_is_granted() -> None:
    msg = message()
    decision = decide(state(Regime.OPT_OUT, marketing=True), msg)
    assert (decision.action, decision.reason, decision.message) == (Action.ALLOW, "granted", msg)


def test_all_granted_allows_the_same_object() -> None:
    msg = message()
    decision = decide(state(analytics=True, marketing=True), msg)
    assert (decision.action, decision.reason, decision.stripped) == (Action.ALLOW, "granted", ())
    assert decision.message is msg


def test_marketing_denied_strips_ad_fields_and_keeps_the_rest() -> None:
    msg = message()
    before = copy.deepcopy(msg)
    decision = decide(state(analytics=True, marketing=False), msg)
    assert (decision.action, decision.reason) == (Action.STRIP, "strip:marketing")
    assert decision.stripped == ("context.device.advertisingId", "context.ip", "context.userAgent")
    out = decision.message
    assert out is not None
    assert out["context"] == {"device": {"id": "dev-1"}, "library": {"name": "journeykit"}}
    assert msg == before  # input untouched
    # Copy-on-write: branches that did not change are shared, not copied.
    assert out["properties"] is msg["properties"]
    assert out["context"]["library"] is msg["context"]["library"]


def test_gpc_under_opt_out_strips_marketing_fields() -> None:
    gpc = ConsentUpdate(purposes={Purpose.MARKETING: False}, source=Source.GPC, timestamp=NOW)
    subject = ConsentState.from_update(gpc, Regime.OPT_OUT)
    decision = decide(subject, message())
    assert (decision.action, decision.reason) == (Action.STRIP, "strip:marketing")


def test_nothing_to_strip_is_an_allow_not_a_strip() -> None:
    msg = {"type": "track", "event": "Signed Up", "context": {"library": {}}}
    decision = decide(state(analytics=True), msg)
    assert (decision.action, decision.reason) == (Action.ALLOW, "granted")
    assert decision.message is msg


def test_consent_messages_are_always_allowed() -> None:
    msg = message(event="Consent Updated", properties={"purposes": {"analytics": False}})
    del msg["context"]["device"]  # as the SDK and the banner build it: nothing to cut
    for subject in (None, state(analytics=False, marketing=False)):
        decision = decide(subject, msg)
        assert (decision.action, decision.reason) == (Action.ALLOW, "consent_message")
        assert decision.message is msg


def test_a_consent_message_passes_with_the_choice_alone() -> None:
    # It passes whatever the consent: nothing else may ride on it, nor a marketing id; the
    # IP address and user agent stay as the ledger's evidence of how the choice was made.
    choice = {"purposes": {"marketing": False}, "notice_version": "n-3", "source": "banner"}
    msg = message(event="Consent Updated", properties={**choice, "card_last4": "4111"})
    msg["traits"] = {"name": "Ann Smith"}
    msg["context"]["page"] = {"url": "https://shop.test/?email=ann@example.com"}
    msg["cart"] = {"items": 3}
    before = copy.deepcopy(msg)
    decision = decide(None, msg)
    assert (decision.action, decision.reason) == (Action.ALLOW, "consent_message")
    assert decision.message is not None
    assert decision.message["properties"] == choice
    assert not {"traits", "cart"} & set(decision.message)
    context = decision.message["context"]
    assert set(context) == {"ip", "userAgent", "library"}  # no device, no page
    assert (context["ip"], context["userAgent"]) == ("203.0.113.9", "Mozilla/5.0")
    assert msg == before  # never mutated


def test_necessary_only_events_are_always_allowed() -> None:
    policy = GatePolicy(event_purposes={"Password Reset": frozenset({Purpose.NECESSARY})})
    msg = message(event="Password Reset")
    # Allowed whatever the consent, but never with what marketing needs unless granted.
    for subject in (None, state(analytics=False)):
        decision = decide(subject, msg, policy)
        assert (decision.action, decision.reason) == (Action.STRIP, "strip:marketing")
        assert decision.message is not None
        context = decision.message["context"]
        assert not {"ip", "userAgent"} & set(context)
        assert "advertisingId" not in context["device"]
    everything = decide(state(analytics=True, marketing=True), msg, policy)
    assert (everything.action, everything.reason) == (Action.ALLOW, "necessary")
    assert everything.message is msg


def test_an_event_name_makes_only_a_track_necessary() -> None:
    # An identify or page with an "event" key is no track: its own type decides.
    policy = GatePolicy(event_purposes={"Password Reset": frozenset({Purpose.NECESSARY})})
    for kind in ("identify", "page"):
        msg = message(kind, event="Password Reset")
        decision = decide(state(analytics=False), msg, policy)
        assert (decision.action, decision.reason) == (Action.DROP, "denied:analytics")
        assert policy.required(msg) == (Purpose.ANALYTICS,)


def test_marketing_events_need_marketing_as_well() -> None:
    policy = GatePolicy(marketing_events=frozenset({"Order Completed"}))
    order = message(event="Order Completed")
    denied = decide(state(analytics=True, marketing=False), order, policy)
    assert (denied.action, denied.reason) == (Action.DROP, "denied:marketing")
    assert decide(state(analytics=True, marketing=True), order, policy).action is Action.ALLOW
    # Only the listed events: another event is merely stripped.
    assert decide(state(analytics=True), message(), policy).action is Action.STRIP


def test_no_marketing_events_by_default() -> None:
    order = message(event="Order Completed")
    assert decide(state(analytics=True, marketing=False), order).action is Action.STRIP


def test_first_denied_purpose_is_named_in_canonical_order() -> None:
    policy = GatePolicy(type_purposes={"track": frozenset({Purpose.MARKETING, Purpose.ANALYTICS})})
    decision = decide(state(), message(), policy)
    assert decision.reason == "denied:analytics"


def test_unknown_types_use_the_default_purposes() -> None:
    assert decide(state(analytics=True), {"type": "weird"}).action is Action.ALLOW
    assert decide(state(analytics=False), {"type": "weird"}).reason == "denied:analytics"
    assert decide(state(analytics=False), {"type": ["not", "hashable"]}).action is Action.DROP


def test_strip_rules_are_configurable_per_purpose() -> None:
    policy = GatePolicy(
        strip={Purpose.PERSONALIZATION: ("properties.plan", "properties.items[].sku")}
    )
    msg = message(properties={"plan": "pro", "items": [{"sku": "a", "n": 1}, {"n": 2}]})
    decision = decide(state(analytics=True, marketing=False), msg, policy)
    assert (decision.action, decision.reason) == (Action.STRIP, "strip:personalization")
    assert decision.message is not None
    assert decision.message["properties"] == {"items": [{"n": 1}, {"n": 2}]}
    assert decision.message["context"] is msg["context"]  # marketing rules replaced, not merged


def test_malformed_strip_path_is_refused_at_configuration() -> None:
    with pytest.raises(ValidationError, match="malformed field path"):
        GatePolicy(strip={Purpose.MARKETING: ("context..ip",)})


def test_decision_requests_need_personalization() -> None:
    assert may_personalize(state(personalization=True))
    assert not may_personalize(state(analytics=True))
    assert not may_personalize(None)
    assert may_personalize(None, GatePolicy(regime=Regime.OPT_OUT))
    assert not may_personalize(state(Regime.OPT_OUT, personalization=False))
    assert decide(state(analytics=True), {"type": "decision"}).reason == "denied:personalization"


def test_every_reason_returned_is_a_registered_code() -> None:
    seen = {
        decide(None, message()).reason,
        decide(None, message(), GatePolicy(regime=Regime.OPT_OUT)).reason,
        decide(state(analytics=True, marketing=True), message()).reason,
        decide(state(analytics=True), message()).reason,
        decide(state(), message()).reason,
        decide(state(), message(event="Consent Updated")).reason,
    }
    assert seen <= set(REASON_CODES)
    assert "denied:necessary" not in REASON_CODES


def test_a_non_object_message_is_a_consent_error() -> None:
    with pytest.raises(ConsentError, match=r"^message: expected an object, got a str$"):
        decide(None, "track")  # type: ignore[arg-type]


def test_the_gate_never_mutates_its_input() -> None:
    messages = [message(kind) for kind in ("track", "identify", "page")]
    before = copy.deepcopy(messages)
    for subject in (None, state(), state(analytics=True), state(analytics=True, marketing=True)):
        for msg in messages:
            decide(subject, msg)
    assert messages == before
