"""Rules compiled once (Protector, IdPseudonyms) give what the general functions give."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest
from helpers import PSEUDONYM_KEY
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from journeykit.consent import (
    FieldKind,
    FieldRule,
    GatePolicy,
    HashMode,
    Pseudonymizer,
    PseudonymKey,
    PseudonymKeyError,
    PseudonymRules,
    Purpose,
    Removal,
    pseudonymize_message,
)
from journeykit.consent._compiled import MEMO_SIZE, IdPseudonyms, Protector
from journeykit.consent.gate import _strip_tree

KEYED = Pseudonymizer([PseudonymKey(key_id="k1", secret=SecretStr(PSEUDONYM_KEY))])
TAGGED = ["hmac-sha256:k1:" + "0" * 64, "sha256:" + "a" * 64, "sha256:not-a-pseudonym"]
TEXTS = ["Ann@Example.com ", "+33 6 12 34 56 78", "call me", "1.2.3.4", "1.2.3.0", "::1", ""]
VALUES = st.one_of(
    st.none(),
    st.integers(-5, 10**12),
    st.sampled_from(TEXTS + TAGGED),
    st.floats(allow_nan=False),
    st.lists(st.sampled_from(TEXTS), max_size=2),
)
LEVEL = st.dictionaries(st.sampled_from(["email", "phone", "ip", "id", "x"]), VALUES, max_size=4)
MESSAGE = st.dictionaries(
    st.sampled_from(["traits", "context", "properties", "type"]),
    st.one_of(
        VALUES,
        LEVEL,
        st.dictionaries(
            st.sampled_from(["traits", "ip", "email", "userAgent", "device"]),
            LEVEL | VALUES,
            max_size=3,
        ),
    ),
    max_size=4,
)
RULES = [
    PseudonymRules(),
    PseudonymRules(
        fields=(
            FieldRule(path="properties.id", kind=FieldKind.ID),
            FieldRule(path="properties.email", kind=FieldKind.EMAIL, mode=HashMode.SHA256),
            FieldRule(path="traits.phone", kind=FieldKind.PHONE, mode=HashMode.SHA256),
            FieldRule(path="context.traits.ip", kind=FieldKind.IP),
            FieldRule(path="type", kind=FieldKind.ID),
        )
    ),
    PseudonymRules(fields=(FieldRule(path="traits.email", kind=FieldKind.EMAIL),)),
    # Overlapping paths and list paths: the general function does the work.
    PseudonymRules(
        fields=(
            FieldRule(path="traits", kind=FieldKind.ID),
            FieldRule(path="traits.email", kind=FieldKind.EMAIL),
        )
    ),
    PseudonymRules(fields=(FieldRule(path="properties.email[]", kind=FieldKind.EMAIL),)),
]


@pytest.mark.parametrize("rules", RULES, ids=[str(i) for i in range(len(RULES))])
def test_a_protector_gives_what_pseudonymize_message_gives(rules: PseudonymRules) -> None:
    protector = Protector(rules, KEYED)

    @settings(max_examples=150, deadline=None)
    @given(MESSAGE)
    def check(message: dict[str, Any]) -> None:
        expected = pseudonymize_message(message, rules, KEYED)
        for _ in range(2):  # computed, then read from the memo
            got = protector.protect(message)
            assert got.message == expected.message
            assert list(got.message) == list(expected.message)
            assert got.removed == expected.removed
            assert (got.message is message) is (expected.message is message)

    check()


def test_a_protector_needs_keys_only_for_keyed_rules() -> None:
    with pytest.raises(PseudonymKeyError):
        Protector(PseudonymRules(), None)
    plain = PseudonymRules(fields=(FieldRule(path="context.ip", kind=FieldKind.IP),))
    out = Protector(plain, None).protect({"context": {"ip": "10.1.2.3"}})
    assert out.message == {"context": {"ip": "10.1.2.0"}}


def test_id_pseudonyms_are_the_pseudonymizers_and_the_memo_starts_again_when_full() -> None:
    ids = IdPseudonyms(KEYED)
    assert ids(" u1 ") == KEYED.pseudonymize(" u1 ", FieldKind.ID)
    assert ids(TAGGED[0]) == TAGGED[0]
    for i in range(MEMO_SIZE):
        ids(f"user-{i}")
    assert len(ids.memo) < MEMO_SIZE  # emptied once on the way, never above its size
    assert ids("user-1") == KEYED.pseudonymize("user-1", FieldKind.ID)


def test_the_generated_walker_holds_no_configured_text() -> None:
    """Keys reach the generated code as constants, never as source: any key is safe."""
    odd = "it's \"x\"\\\n) or __import__('os')"
    rules = PseudonymRules(
        fields=(
            FieldRule(path=f"properties.{odd}", kind=FieldKind.EMAIL),
            FieldRule(path="context.ip", kind=FieldKind.IP),
        )
    )
    protector = Protector(rules, KEYED)
    assert protector.walker is not None
    source = protector.walker.__source__  # type: ignore[attr-defined]
    assert "__import__" not in source
    assert not any(f"{q}{key}{q}" in source for key in ("ip", "context") for q in "'\"")
    message = {"properties": {odd: "Ann@Example.com"}, "context": {"ip": "10.1.2.3"}}
    got = protector.protect(message)
    assert got == pseudonymize_message(message, rules, KEYED)
    assert got.message["properties"][odd].startswith("hmac-sha256:k1:")


def test_objects_that_are_mappings_but_not_dicts_are_walked_too() -> None:
    rules = PseudonymRules()
    message = {
        "context": MappingProxyType({"ip": "10.1.2.3", "traits": MappingProxyType({"x": 1})}),
        "properties": MappingProxyType({"email": 3, "phone": ["+33 6 12 34 56 78"]}),
        "traits": "not an object",
    }
    expected = pseudonymize_message(message, rules, KEYED)
    got = Protector(rules, KEYED).protect(message)
    assert (got.message, got.removed) == (expected.message, expected.removed)
    assert got.message["context"] == {"ip": "10.1.2.0", "traits": {"x": 1}}


STRIPS = [
    ("context.ip", "context.userAgent", "context.device.advertisingId"),  # the default
    ("traits", "properties.email", "context.traits.ip"),  # whole objects, rule paths
    ("properties.id.x", "type"),  # below a rule's end (properties.id in RULES[1])
]


@pytest.mark.parametrize("rules", RULES[:3], ids=["default", "keyed", "one"])
@pytest.mark.parametrize("paths", STRIPS, ids=["default", "objects", "below-a-rule"])
def test_stripping_and_protecting_in_one_walk_is_one_then_the_other(
    rules: PseudonymRules, paths: tuple[str, ...]
) -> None:
    protector = Protector(rules, KEYED)
    plan = GatePolicy(strip={Purpose.MARKETING: paths})._compiled.plan(frozenset())
    assert plan is not None
    assert plan.tree is not None
    both = protector.stripping(plan.tree)
    conflict = rules is RULES[1] and paths is STRIPS[2]
    assert (both is None) is conflict
    if both is None:
        return

    @settings(max_examples=150, deadline=None)
    @given(MESSAGE)
    def check(message: dict[str, Any]) -> None:
        stripped = _strip_tree(message, plan.tree, [])
        expected = protector.protect(stripped)
        removed: list[Removal] = []
        got = both(message, removed)
        assert got == expected.message
        assert list(got) == list(expected.message)
        if len(removed) > 1:
            protector.sort(removed)
        assert tuple(removed) == expected.removed
        assert (got is message) is (expected.message is message)
        assert [v is message.get(k) for k, v in got.items()] == [
            v is message.get(k) for k, v in expected.message.items()
        ]

    check()
