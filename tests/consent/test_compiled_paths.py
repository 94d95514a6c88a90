"""The gate's and pseudonymization's precompiled paths give what applying rules one by one gives."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from helpers import PSEUDONYM_KEY
from pydantic import SecretStr

from journeykit.consent import (
    Action,
    ConsentState,
    ConsentUpdate,
    FieldKind,
    FieldRule,
    GatePolicy,
    Pseudonymizer,
    PseudonymKey,
    PseudonymRules,
    Purpose,
    Regime,
    Source,
    decide,
    pseudonymize_message,
)

WHEN = datetime(2025, 3, 1, tzinfo=UTC)
KEYED = Pseudonymizer([PseudonymKey(key_id="k1", secret=SecretStr(PSEUDONYM_KEY))])


def state(regime: Regime = Regime.OPT_IN, **purposes: bool) -> ConsentState:
    update = ConsentUpdate(
        purposes={Purpose(k): v for k, v in purposes.items()}, source=Source.API, timestamp=WHEN
    )
    return ConsentState.from_update(update, regime)


def test_granted_is_per_state_and_follows_a_copy_with_another_regime() -> None:
    opt_in = state(analytics=True)
    assert opt_in.granted() == {Purpose.NECESSARY, Purpose.ANALYTICS}
    opt_out = opt_in.model_copy(update={"regime": Regime.OPT_OUT})  # it copies the cache too
    assert opt_out.granted() == set(Purpose) - set()
    assert opt_in.granted() == {Purpose.NECESSARY, Purpose.ANALYTICS}
    assert opt_in == state(analytics=True)  # the cache is not part of equality


def test_a_new_state_for_the_same_subject_gets_a_new_decision() -> None:
    message = {"type": "track", "event": "E", "userId": "u", "context": {"ip": "203.0.113.9"}}
    before = state(analytics=True)
    after = before.merge(
        ConsentUpdate(purposes={Purpose.MARKETING: True}, source=Source.API, timestamp=WHEN)
    )
    withdrawn = after.merge(
        ConsentUpdate(
            purposes={Purpose.ANALYTICS: False}, source=Source.API, timestamp=WHEN.replace(day=2)
        )
    )
    assert decide(before, message).action is Action.STRIP
    assert decide(after, message).action is Action.ALLOW
    assert decide(before, message).action is Action.STRIP  # the policy's plans are per state
    assert decide(withdrawn, message).reason == "denied:analytics"


def _one_by_one(policy: GatePolicy) -> GatePolicy:
    # A path repeated makes the policy's paths overlap: the gate then applies them in order.
    first = next(iter(policy.strip))
    return policy.model_copy(
        update={"strip": {**policy.strip, first: (*policy.strip[first], policy.strip[first][0])}}
    )


def test_stripping_in_one_walk_names_paths_in_policy_order() -> None:
    policy = GatePolicy(
        strip={
            Purpose.PERSONALIZATION: ("context.device.model", "properties.recommendation"),
            Purpose.MARKETING: ("context.ip", "context.device.advertisingId", "context.missing"),
        }
    )
    message: dict[str, Any] = {
        "type": "track",
        "event": "E",
        "userId": "u",
        "context": {"ip": "1.2.3.4", "device": {"advertisingId": "ad", "model": "m", "id": "d"}},
        "properties": {"recommendation": "r", "price": 1},
    }
    subject = state(analytics=True)
    walked = decide(subject, message, policy)
    in_order = decide(subject, message, _one_by_one(policy))
    assert walked == in_order
    assert walked.reason == "strip:personalization"
    assert walked.stripped == (
        "context.device.model",
        "properties.recommendation",
        "context.ip",
        "context.device.advertisingId",
    )
    assert walked.message == {
        "type": "track",
        "event": "E",
        "userId": "u",
        "context": {"device": {"id": "d"}},
        "properties": {"price": 1},
    }
    assert message["context"]["ip"] == "1.2.3.4"  # never mutated


def test_overlapping_strip_paths_are_applied_one_by_one() -> None:
    policy = GatePolicy(strip={Purpose.MARKETING: ("context.device", "context.device.id")})
    message = {"type": "track", "event": "E", "userId": "u", "context": {"device": {"id": "d"}}}
    decision = decide(state(analytics=True), message, policy)
    assert decision.stripped == ("context.device",)
    assert decision.message == {"type": "track", "event": "E", "userId": "u", "context": {}}


RULES = PseudonymRules(
    fields=(
        FieldRule(path="context.ip", kind=FieldKind.IP),
        FieldRule(path="properties.phone", kind=FieldKind.PHONE),
        FieldRule(path="traits.email", kind=FieldKind.EMAIL),
        FieldRule(path="properties.items[].email", kind=FieldKind.EMAIL),
        FieldRule(path="properties.email", kind=FieldKind.EMAIL),
        FieldRule(path="userId", kind=FieldKind.ID),
    )
)
MESSAGES: list[dict[str, Any]] = [
    {"type": "track", "userId": "u", "context": {"library": {}}, "properties": {}},
    {
        "type": "identify",
        "userId": 42,
        "context": {"ip": "not an ip"},
        "traits": {"email": " Ann@Example.com "},
        "properties": {
            "phone": "call me",
            "email": ["a list"],
            "items": [{"email": "b@example.com"}, {"email": None}, {"sku": "s"}],
        },
    },
    {"type": "track", "anonymousId": "a", "context": "not an object", "traits": None},
]


def test_pseudonymizing_in_one_walk_equals_rule_by_rule() -> None:
    # The last rule repeated makes the paths overlap, which applies the rules one by one.
    one_by_one = PseudonymRules(fields=(*RULES.fields, RULES.fields[-1]))
    for message in MESSAGES:
        walked = pseudonymize_message(message, RULES, KEYED)
        in_order = pseudonymize_message(message, one_by_one, KEYED)
        assert walked == in_order


def test_fields_removed_are_reported_in_rule_order() -> None:
    result = pseudonymize_message(MESSAGES[1], RULES, KEYED)
    assert [(r.path, r.reason) for r in result.removed] == [
        ("context.ip", "invalid_ip"),
        ("properties.phone", "invalid_phone"),
        ("properties.email", "not_a_string"),
    ]
    assert result.message["userId"] == KEYED.pseudonymize("42", FieldKind.ID)
    assert result.message["traits"]["email"] == KEYED.pseudonymize(
        "ann@example.com", FieldKind.EMAIL
    )
    assert result.message["properties"]["items"][1] == {"email": None}
    assert "phone" not in result.message["properties"]
