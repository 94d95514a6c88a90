"""The fused track path gives exactly what the general path gives, whatever the configuration.

A ``track(user, event, properties)`` with no other argument takes ``Core._track``; passing an
empty ``integrations`` mapping builds the very same message through the general path. Typed
events take it too, with their properties dumped by ``Calls.track`` itself and changed in place.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest
from helpers import PSEUDONYM_KEY, Recorder
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from journeykit.consent import (
    FieldKind,
    FieldRule,
    GatePolicy,
    Pseudonymizer,
    PseudonymKey,
    PseudonymRules,
)
from journeykit.sdk import Client, Drop, TrackEvent

TAGGED = ["hmac-sha256:k1:" + "0" * 64, "sha256:" + "a" * 64, "sha256:not-a-pseudonym"]
TEXTS = ["Ann@Example.com ", " ann@example.com", "+33 6 12 34 56 78", "call me", "1.2.3.4", ""]
VALUES = st.one_of(
    st.none(),
    st.integers(-5, 10**12),
    st.sampled_from(TEXTS + TAGGED),
    st.lists(st.integers(), max_size=2),
)
PROPERTIES = st.dictionaries(
    st.sampled_from(["email", "phone", "price", "ip", "nested", "advertisingId"]),
    st.one_of(VALUES, st.dictionaries(st.sampled_from(["email", "ip"]), VALUES, max_size=2)),
    max_size=5,
)

CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "opt-out": {"consent_regime": "opt_out"},
    "strips-properties": {
        "gate_policy": GatePolicy(
            strip={"marketing": ("properties.advertisingId", "properties.nested.ip")}  # type: ignore[dict-item]
        ),
    },
    "rules-under-properties": {
        "pseudonym_rules": PseudonymRules(
            fields=(
                FieldRule(path="properties.nested.email", kind=FieldKind.EMAIL),
                FieldRule(path="properties.ip", kind=FieldKind.IP),
                FieldRule(path="properties.phone", kind=FieldKind.PHONE, mode="sha256"),  # type: ignore[arg-type]
            )
        ),
    },
    "rules-with-lists": {
        "pseudonym_rules": PseudonymRules(
            fields=(FieldRule(path="properties.nested[].email", kind=FieldKind.EMAIL),)
        ),
    },
    "strip-a-top-level-key": {
        "gate_policy": GatePolicy(strip={"marketing": ("event",)}),  # type: ignore[dict-item]
    },
    "ids-and-emails-keyed": {
        "pseudonym_rules": PseudonymRules(
            fields=(
                FieldRule(path="properties.advertisingId", kind=FieldKind.ID),
                FieldRule(path="properties.email", kind=FieldKind.EMAIL),
                FieldRule(path="properties.phone", kind=FieldKind.PHONE),
            )
        ),
    },
    "no-pseudonymization": {"pseudonymize": False},
}
GRANTS = [None, ["analytics"], ["analytics", "marketing"], []]


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize("granted", GRANTS, ids=["unknown", "analytics", "all", "none"])
def test_the_fused_path_matches_the_general_one(config: str, granted: list[str] | None) -> None:
    recorder = Recorder()
    drops: list[Drop] = []
    options = dict(CONFIGS[config])
    if options.get("pseudonymize", True):
        options["pseudonym_key"] = PSEUDONYM_KEY
    client = Client("k", transport=httpx.MockTransport(recorder), on_drop=drops.append, **options)
    if granted is not None:
        client.consent(
            "u1", granted=granted or ["necessary"], denied=[] if granted else ["analytics"]
        )
    client.flush(timeout=5)
    start = len(recorder.events)

    @settings(max_examples=40, deadline=None)
    @given(PROPERTIES, st.sampled_from(["Product Viewed", "Consent Updated", "Signed Up"]))
    def check(properties: dict[str, Any], event: str) -> None:
        before = len(drops)
        fast = client.track("u1", event, properties)
        general = client.track("u1", event, properties, integrations={})
        assert (fast.queued, fast.reason, fast.detail) == (
            general.queued,
            general.reason,
            general.detail,
        )
        assert [(d.reason, d.detail) for d in drops[before:][:1]] == [
            (d.reason, d.detail) for d in drops[before:][1:]
        ]
        assert client.flush(timeout=5)
        sent = recorder.events[start:]
        if fast.queued:
            one, two = (strip_ids(e) for e in sent[-2:])
            assert one == two
            assert sent[-2]["messageId"] == fast.message_id

    check()
    stats = client.stats()
    for reason, count in stats.fields_removed.items():
        assert count % 2 == 0, reason  # each removal seen once on each path
    client.shutdown(timeout=5)


def strip_ids(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("messageId", "timestamp", "sentAt")}


def test_properties_given_by_the_app_are_never_mutated() -> None:
    recorder = Recorder()
    with Client("k", transport=httpx.MockTransport(recorder), pseudonym_key=PSEUDONYM_KEY) as c:
        c.consent("u1", granted=["analytics"])
        properties = {"email": "ann@example.com", "price": 3}
        assert c.track("u1", "Signed Up", properties)
        assert c.flush(timeout=5)
    assert properties == {"email": "ann@example.com", "price": 3}
    assert recorder.events[-1]["properties"]["email"].startswith("hmac-sha256:k1:")


class Contacted(TrackEvent):
    """A typed event with fields the rules protect, and one they do not."""

    event_name: ClassVar[str] = "Contacted"
    email: str | None = None
    phone: str | None = None
    advertisingId: str | int | None = None
    price: float | None = None


class Restated(Contacted):
    """Overrides properties(): the client must call it, not dump the model itself."""

    event_name: ClassVar[str] = "Restated"

    def properties(self) -> dict[str, Any]:
        return {**super().properties(), "restated": True}


FIELDS = st.one_of(st.none(), st.sampled_from([t for t in TEXTS + TAGGED if t]))  # "" is invalid


@pytest.mark.parametrize(
    "config", ["defaults", "strips-properties", "ids-and-emails-keyed", "rules-under-properties"]
)
def test_typed_events_match_the_general_path(config: str) -> None:
    recorder = Recorder()
    options = {**CONFIGS[config], "pseudonym_key": PSEUDONYM_KEY}
    client = Client("k", transport=httpx.MockTransport(recorder), **options)
    client.consent("u1", granted=["analytics"])
    client.flush(timeout=5)

    @settings(max_examples=40, deadline=None)
    @given(FIELDS, FIELDS, st.one_of(FIELDS, st.integers(0, 10**6)), st.sampled_from([1.5, None]))
    def check(email: Any, phone: Any, advertising_id: Any, price: Any) -> None:
        for cls in (Contacted, Restated):
            event = cls(email=email, phone=phone, advertisingId=advertising_id, price=price)
            dumped = event.properties()
            fast = client.track("u1", event)
            general = client.track("u1", event, integrations={})
            assert (fast.queued, fast.reason) == (general.queued, general.reason)
            assert event.properties() == dumped  # the model is never changed
            assert client.flush(timeout=5)
            one, two = (strip_ids(e) for e in recorder.events[-2:])
            assert one == two
            assert one["event"] == cls.event_name
            assert ("restated" in one["properties"]) is (cls is Restated)

    check()
    client.shutdown(timeout=5)


def test_pseudonyms_stay_right_past_the_memo_size() -> None:
    # The fused path keeps recent pseudonyms in a bounded memo, emptied when full.
    recorder = Recorder()
    reference = Pseudonymizer([PseudonymKey(key_id="k1", secret=SecretStr(PSEUDONYM_KEY))])
    emails = [f"Visitor{i}@Example.com" for i in range(Pseudonymizer.CACHE_SIZE + 10)]
    with Client("k", transport=httpx.MockTransport(recorder), pseudonym_key=PSEUDONYM_KEY) as c:
        c.consent("u1", granted=["analytics"])
        for email in [*emails, emails[0], emails[-1]]:
            assert c.track("u1", "Signed Up", {"email": email})
        assert c.flush(timeout=30)
    sent = [e["properties"]["email"] for e in recorder.events if e["event"] == "Signed Up"]
    expected = [
        reference.pseudonymize(e, FieldKind.EMAIL) for e in [*emails, emails[0], emails[-1]]
    ]
    assert sent == expected
