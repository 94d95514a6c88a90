"""Consent and pseudonymization in the client: decided before the queue, reported when dropped."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from helpers import PSEUDONYM_KEY, Recorder
from pydantic import SecretStr, ValidationError

from journeykit.consent import (
    ConsentState,
    ConsentUpdate,
    FieldKind,
    GatePolicy,
    Pseudonymizer,
    PseudonymKey,
    PseudonymKeyError,
    Purpose,
    Regime,
    Source,
)
from journeykit.sdk import Client, Drop, InvalidMessage

EMAIL = "Ann.Person@Example.com"
AD_CONTEXT = {"ip": "203.0.113.97", "userAgent": "Mozilla/5.0", "device": {"advertisingId": "ad"}}


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KEY", "KEY_ID", "OLD_KEYS", "KEY_FILE"):
        monkeypatch.delenv(f"JOURNEYKIT_PSEUDONYM_{name}", raising=False)


def make_client(recorder: Recorder, **options: Any) -> Client:
    options.setdefault("pseudonym_key", PSEUDONYM_KEY)
    return Client("wk-test", transport=httpx.MockTransport(recorder), **options)


def pseudonym(value: str, kind: FieldKind, key: str = PSEUDONYM_KEY) -> str:
    keys = [PseudonymKey(key_id="k1", secret=SecretStr(key))]
    return Pseudonymizer(keys).pseudonymize(value, kind)


def sent_bytes(recorder: Recorder) -> bytes:
    return b"".join(gzip.decompress(r.content) for r in recorder.requests)


def state(when: datetime, **purposes: bool) -> ConsentState:
    update = ConsentUpdate(
        purposes={Purpose(k): v for k, v in purposes.items()}, source=Source.API, timestamp=when
    )
    return ConsentState.from_update(update)


# -- the gate ----------------------------------------------------------------------------------


def test_opt_in_without_consent_drops_with_no_consent() -> None:
    drops: list[Drop] = []
    recorder = Recorder()
    with make_client(recorder, on_drop=drops.append) as client:
        result = client.track("u1", "Product Viewed", {"product_id": "p1"})
        assert client.flush(timeout=5)
    assert not result
    assert result.reason == "no_consent"
    assert [(d.reason, d.message_id) for d in drops] == [("no_consent", result.message_id)]
    assert client.stats().dropped == {"no_consent": 1}
    assert client.stats().queued == 0
    assert recorder.requests == []


def test_consent_sends_the_consent_event_and_gates_later_events() -> None:
    recorder = Recorder()
    with make_client(recorder) as client:
        assert client.consent(
            "u1",
            granted=["Analytics"],
            denied=["marketing"],
            notice_version="notice-7",
            anonymous_id="a1",
        )
        assert client.track("u1", "Product Viewed", {"product_id": "p1"})
        assert client.page(None, "Home", anonymous_id="a1")  # the device is known too
        assert not client.track("u2", "Product Viewed", {"product_id": "p1"})
        assert client.flush(timeout=5)
    consent, viewed, page = recorder.events
    assert consent["type"] == "track"
    assert consent["event"] == "Consent Updated"
    assert (consent["userId"], consent["anonymousId"]) == ("u1", "a1")
    assert consent["properties"] == {
        "purposes": {"analytics": True, "marketing": False},
        "notice_version": "notice-7",
        "source": "banner",
    }
    assert viewed["event"] == "Product Viewed"
    assert page["type"] == "page"
    known = client.consent_state("u1")
    assert known is not None
    assert known.is_granted(Purpose.ANALYTICS)
    assert not known.is_granted(Purpose.MARKETING)
    assert known.notice_version == "notice-7"
    assert client.stats().dropped == {"no_consent": 1}


def test_a_withdrawal_is_sent_and_stops_what_follows() -> None:
    drops: list[Drop] = []
    recorder = Recorder()
    with make_client(recorder, on_drop=drops.append) as client:
        client.consent("u1", granted=["analytics"])
        assert client.track("u1", "A")
        assert client.consent("u1", denied=["analytics"])  # itself always let through
        assert not client.track("u1", "B")
        assert client.flush(timeout=5)
    assert [e["event"] for e in recorder.events] == ["Consent Updated", "A", "Consent Updated"]
    assert [d.reason for d in drops] == ["denied:analytics"]
    assert client.stats().dropped == {"denied:analytics": 1}


def test_denied_marketing_strips_advertising_fields_and_counts_them() -> None:
    recorder = Recorder()
    with make_client(recorder) as client:
        client.consent("u1", granted=["analytics"], denied=["marketing"])
        assert client.track("u1", "Product Viewed", {"product_id": "p1"}, context=AD_CONTEXT)
        assert client.flush(timeout=5)
    viewed = recorder.events[1]
    assert "ip" not in viewed["context"]
    assert "userAgent" not in viewed["context"]
    assert viewed["context"]["device"] == {}
    assert client.stats().fields_removed == {"strip:marketing": 3}
    assert client.stats().dropped == {}


def test_granted_marketing_keeps_them_with_the_ip_truncated() -> None:
    recorder = Recorder()
    with make_client(recorder) as client:
        client.consent("u1", granted=["analytics", "marketing"])
        client.track("u1", "Product Viewed", {"product_id": "p1"}, context=AD_CONTEXT)
        assert client.flush(timeout=5)
    context = recorder.events[1]["context"]
    assert context["ip"] == "203.0.113.0"
    assert context["device"] == {"advertisingId": "ad"}
    assert b"203.0.113.97" not in sent_bytes(recorder)


def test_opt_out_regime_sends_for_unknown_subjects_but_honours_denials() -> None:
    recorder = Recorder()
    with make_client(recorder, consent_regime="opt_out") as client:
        assert client.track("u1", "A")
        client.consent("u2", denied=["analytics"])
        assert client.track("u2", "B").reason == "denied:analytics"
        assert client.flush(timeout=5)
    assert [e["event"] for e in recorder.events] == ["A", "Consent Updated"]


def test_a_choice_not_remembered_is_sent_and_kept_by_the_caller() -> None:
    recorder = Recorder()
    with make_client(recorder) as client:
        assert client.consent("u1", granted=["analytics"], anonymous_id="a1", remember=False)
        assert client.consent_state("u1", "a1") is None
        assert not client.track("u1", "Product Viewed", {"product_id": "p1"})
        assert client.flush(timeout=5)
    [consent] = recorder.events
    assert consent["properties"]["purposes"] == {"analytics": True}


def test_a_consent_event_sent_with_track_is_a_consent() -> None:
    # It passes the gate without consent, so it is checked and kept as consent() keeps it.
    recorder = Recorder()
    drops: list[Drop] = []
    with make_client(recorder, on_drop=drops.append) as client:
        sent = client.track("u9", "Consent Updated", {"purposes": {"analytics": True}, "x": 1})
        assert sent
        state = client.consent_state("u9")
        assert state is not None
        assert state.is_granted(Purpose.ANALYTICS)
        assert not client.track("u8", "Consent Updated", {"purposes": {"ads": True}})
        assert client.flush(timeout=5)
    [event] = recorder.events
    assert event["properties"] == {"purposes": {"analytics": True}}
    assert [d.reason for d in drops] == ["invalid"]


def test_a_necessary_event_needs_no_consent() -> None:
    policy = GatePolicy(event_purposes={"Password Reset": frozenset({Purpose.NECESSARY})})
    with make_client(Recorder(), gate_policy=policy) as client:
        assert client.track("u1", "Password Reset")
        assert client.track("u1", "Other").reason == "no_consent"


def test_consent_regime_and_gate_policy_cannot_disagree() -> None:
    with pytest.raises(ValidationError, match="contradicts"):
        make_client(Recorder(), consent_regime="opt_in", gate_policy=GatePolicy(regime="opt_out"))


def test_the_resolver_feeds_the_gate_and_the_newer_state_wins() -> None:
    now = datetime.now(UTC)
    asked: list[tuple[str | None, str | None]] = []

    def resolver(user_id: str | None, anonymous_id: str | None) -> ConsentState | None:
        asked.append((user_id, anonymous_id))
        return state(now, analytics=True) if user_id == "u1" else None

    recorder = Recorder()
    with make_client(recorder, consent_resolver=resolver) as client:
        assert client.track("u1", "A", anonymous_id="a1")
        assert client.track("u2", "B").reason == "no_consent"
        # A local withdrawal newer than the resolver's grant wins...
        client.consent("u1", denied=["analytics"], timestamp=now + timedelta(seconds=1))
        assert client.track("u1", "C").reason == "denied:analytics"
        # ...and a local grant older than the resolver's state loses to it.
        client.consent("u3", granted=["analytics"], timestamp=now - timedelta(days=1))
        assert client.track("u3", "D")
    assert ("u1", "a1") in asked


def test_a_resolver_that_raises_drops_the_event_with_consent_error() -> None:
    def broken(user_id: str | None, anonymous_id: str | None) -> ConsentState | None:
        raise RuntimeError("database down")

    drops: list[Drop] = []
    with make_client(Recorder(), consent_resolver=broken, on_drop=drops.append) as client:
        assert client.track("u1", "A").reason == "consent_error"
        assert client.consent("u1", granted=["analytics"])  # consent events need no lookup
    assert [d.reason for d in drops] == ["consent_error"]


def test_a_choice_for_user_and_device_keeps_each_ids_other_choices() -> None:
    """Naming both ids folds the choice into each one's own state, as the collector does.

    The device refused marketing before sign-in; the user granted it elsewhere. A later choice
    about analytics for both must not hand the user's marketing grant to the device, whose
    anonymous events (after sign-out, say) keep their advertising fields stripped.
    """
    recorder = Recorder()
    with make_client(recorder) as client:
        client.consent(None, granted=["analytics"], denied=["marketing"], anonymous_id="a1")
        client.consent("u1", granted=["analytics", "marketing"])
        client.consent("u1", granted=["analytics"], anonymous_id="a1")
        assert client.page(None, "Home", anonymous_id="a1", context=AD_CONTEXT)
        assert client.flush(timeout=5)
    device = client.consent_state(None, "a1")
    user = client.consent_state("u1")
    assert device is not None
    assert user is not None
    assert not device.is_granted(Purpose.MARKETING)
    assert user.is_granted(Purpose.MARKETING)
    assert recorder.events[-1]["context"]["device"] == {}


def test_the_consent_map_is_bounded() -> None:
    with make_client(Recorder(), max_consent_subjects=2) as client:
        for user in ("u1", "u2", "u3"):
            client.consent(user, granted=["analytics"])
        assert client.consent_state("u1") is None  # least recently used, forgotten
        assert client.track("u1", "A").reason == "no_consent"
        assert client.track("u3", "A")


@pytest.mark.parametrize(
    ("granted", "denied", "error"),
    [
        (["analytics", "ads"], [], "unknown purpose 'ads'"),
        (["analytics"], ["analytics"], "both granted and denied"),
        ([], ["necessary"], "necessary cannot be denied"),
        ([], [], "at least one purpose"),
    ],
)
def test_invalid_consent_calls(granted: list[str], denied: list[str], error: str) -> None:
    with make_client(Recorder(), strict=True) as client:
        with pytest.raises(InvalidMessage, match=error):
            client.consent("u1", granted=granted, denied=denied)
        assert client.consent_state("u1") is None
    with make_client(Recorder()) as client:
        result = client.consent("u1", granted=granted, denied=denied)
        assert result.reason == "invalid"
        assert client.consent_state("u1") is None


# -- pseudonymization --------------------------------------------------------------------------


def test_email_arrives_pseudonymized_and_never_in_clear() -> None:
    recorder = Recorder()
    with make_client(recorder) as client:
        client.consent("u1", granted=["analytics"])
        client.identify("u1", {"email": EMAIL, "plan": "pro"})
        client.track("u1", "Signed Up", {"email": EMAIL, "phone": "+44 20 7946 0958"})
        assert client.flush(timeout=5)
    identify, signed_up = recorder.events[1:]
    expected = pseudonym(EMAIL, FieldKind.EMAIL)
    assert expected.startswith("hmac-sha256:k1:")
    assert identify["traits"] == {"email": expected, "plan": "pro"}
    assert signed_up["properties"]["email"] == expected
    assert signed_up["properties"]["phone"] == pseudonym("+442079460958", FieldKind.PHONE)
    raw = sent_bytes(recorder)
    assert EMAIL.encode() not in raw
    assert EMAIL.lower().encode() not in raw


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env_key = "env-pseudonym-key-abcdef0123456789"
    monkeypatch.setenv("JOURNEYKIT_PSEUDONYM_KEY", env_key)
    recorder = Recorder()
    with Client("wk-test", transport=httpx.MockTransport(recorder)) as client:
        client.consent("u1", granted=["analytics"])
        client.identify("u1", {"email": EMAIL})
        assert client.flush(timeout=5)
    assert recorder.events[1]["traits"]["email"] == pseudonym(EMAIL, FieldKind.EMAIL, env_key)


def test_no_key_is_refused_at_construction() -> None:
    with pytest.raises(PseudonymKeyError, match="pseudonymize=False"):
        Client("wk-test")
    with pytest.raises(PseudonymKeyError, match="shorter than 16"):
        Client("wk-test", pseudonym_key="short")


def test_pseudonymize_false_is_the_explicit_way_to_send_fields_as_they_are() -> None:
    recorder = Recorder()
    with make_client(recorder, pseudonym_key=None, pseudonymize=False) as client:
        client.consent("u1", granted=["analytics"])
        client.identify("u1", {"email": EMAIL})
        assert client.flush(timeout=5)
    assert recorder.events[1]["traits"]["email"] == EMAIL


def test_a_pseudonymizer_object_can_be_given() -> None:
    recorder = Recorder()
    keys = Pseudonymizer([PseudonymKey(key_id="k9", secret=SecretStr(PSEUDONYM_KEY))])
    with make_client(recorder, pseudonym_key=None, pseudonymizer=keys) as client:
        client.consent("u1", granted=["analytics"])
        client.identify("u1", {"email": EMAIL})
        assert client.flush(timeout=5)
    assert recorder.events[1]["traits"]["email"].startswith("hmac-sha256:k9:")


def test_fields_that_cannot_be_protected_are_removed_and_counted() -> None:
    recorder = Recorder()
    with make_client(recorder) as client:
        client.consent("u1", granted=["analytics", "marketing"])
        result = client.identify("u1", {"phone": "call me maybe", "plan": "pro"})
        client.track("u1", "E", context={"ip": "not-an-ip"})
        assert client.flush(timeout=5)
    assert result  # the event is sent, without the field
    identify, tracked = recorder.events[1:]
    assert identify["traits"] == {"plan": "pro"}
    assert "ip" not in tracked["context"]
    assert client.stats().fields_removed == {"invalid_phone": 1, "invalid_ip": 1}
    assert client.stats().dropped == {}
    assert b"call me maybe" not in sent_bytes(recorder)


def test_the_users_mappings_are_not_modified() -> None:
    traits = {"email": EMAIL}
    context = dict(AD_CONTEXT)
    with make_client(Recorder()) as client:
        client.consent("u1", granted=["analytics"], denied=["marketing"])
        client.identify("u1", traits, context=context)
    assert traits == {"email": EMAIL}
    assert context == AD_CONTEXT


def test_regime_values_are_the_consent_packages() -> None:
    with make_client(Recorder(), consent_regime=Regime.OPT_OUT) as client:
        assert client.settings.policy.regime is Regime.OPT_OUT


def test_pseudonyms_carry_the_collectors_key_id() -> None:
    # A data-subject request looks for hmac-sha256:<the collector's key id>:...
    recorder = Recorder()
    options = {"pseudonym_key": PSEUDONYM_KEY, "pseudonym_key_id": "prod-2026"}
    with make_client(recorder, consent_regime="opt_out", **options) as client:
        client.identify("u1", {"email": "Ann@Example.com"})
        assert client.flush(timeout=5)
    collector = Pseudonymizer([PseudonymKey(key_id="prod-2026", secret=SecretStr(PSEUDONYM_KEY))])
    [event] = recorder.events
    assert event["traits"]["email"] == collector.pseudonymize("ann@example.com", FieldKind.EMAIL)
