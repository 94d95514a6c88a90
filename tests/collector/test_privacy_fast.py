"""The privacy step's fused path gives exactly what its reference path gives, event by event.

Two steps with the same configuration, keys and suppression list, each on its own data dir,
see the same batches: one through ``process`` (the fused path, which hands events with a
consent signal to the reference path), the other through ``process_reference``. Their consent
stores change in step, so later batches meet the states earlier ones recorded, and are compared
after every batch. Requests come with and without ``Sec-GPC: 1``, at times before, at and after
the states' latest signals, so that the header is merged, absorbed, or merged to no effect.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import PSEUDONYM_KEY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from journeykit.collector.privacy import PrivacyOutcome, PrivacyStep
from journeykit.collector.suppression import SuppressionList
from journeykit.consent import (
    ConsentLedger,
    FieldKind,
    FieldRule,
    GatePolicy,
    HashMode,
    Pseudonymizer,
    PseudonymKey,
    PseudonymRules,
    Purpose,
    Regime,
)

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))
KEYS = Pseudonymizer([PseudonymKey(key_id="k1", secret=SecretStr(PSEUDONYM_KEY))])
SUPPRESSED = "u-gone"
TAGGED = ["hmac-sha256:k1:" + "0" * 64, "sha256:" + "a" * 64, "sha256:not-a-pseudonym"]
TEXTS = ["Ann@Example.com ", " ann@example.com", "+33 6 12 34 56 78", "call me", "1.2.3.4", ""]
IPS = ["203.0.113.7", "203.0.113.0", "2001:db8:1:2::1", "fe80::1%eth0", "not an ip", " 10.0.0.1"]

VALUES = st.one_of(
    st.none(),
    st.integers(-5, 10**12),
    st.sampled_from(TEXTS + TAGGED + IPS),
    st.booleans(),
    st.lists(st.integers(-(10**6), 10**6), max_size=2),
)
FIELDS = st.dictionaries(
    st.sampled_from(["email", "phone", "price", "ip", "advertisingId", "sku"]),
    st.one_of(VALUES, st.dictionaries(st.sampled_from(["email", "ip"]), VALUES, max_size=2)),
    max_size=4,
)
IDS = st.one_of(
    st.none(), st.sampled_from(["u1", "u2", " u3 ", "", SUPPRESSED, *TAGGED]), st.integers(0, 3)
)
CATEGORIES = st.dictionaries(
    st.sampled_from(["Analytics", "Marketing", "Functional", "Necessary", "Unknown"]),
    st.booleans() | st.sampled_from(["yes", None]),  # mostly valid: signals that change state
    max_size=3,
)
RUDDERSTACK = st.fixed_dictionaries(
    {},
    optional={
        "allowedConsentIds": st.lists(st.sampled_from(["C0002", "C0004", "x"]), max_size=2),
        "deniedConsentIds": st.one_of(
            st.lists(st.sampled_from(["C0003", "C0004"]), max_size=2), st.just("C0001")
        ),
        "resolutionStrategy": st.sampled_from(["and", "or", "xor"]),
    },
)
CONTEXT = st.fixed_dictionaries(
    {},
    optional={
        "ip": st.one_of(st.sampled_from(IPS), VALUES),
        "userAgent": st.sampled_from(["Mozilla/5.0", "bench"]),
        "traits": FIELDS,
        "device": st.dictionaries(st.just("advertisingId"), VALUES, max_size=1),
        "consent": st.one_of(
            st.fixed_dictionaries({"categoryPreferences": CATEGORIES}),
            st.just({}),
            st.just("all"),
        ),
        "consentManagement": RUDDERSTACK,
        "library": st.just({"name": "analytics-python", "version": "2.3"}),
    },
)
PURPOSES = st.dictionaries(
    st.sampled_from(["analytics", "personalization", "marketing", "necessary", "ads"]),
    st.booleans() | st.just("yes"),
    max_size=3,
)
CONSENT_PROPERTIES = st.fixed_dictionaries(
    {"purposes": PURPOSES},
    optional={"notice_version": st.sampled_from(["2026-01", 3]), "source": st.just("banner")},
)
EVENT = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "track", "page", "identify", "alias", "decision"]),
        "messageId": st.uuids().map(str),
        "receivedAt": st.just("2026-03-01T12:00:00.000Z"),
    },
    optional={
        "event": st.sampled_from(["Product Viewed", "Consent Updated", "Password Reset", "Ad"]),
        "userId": IDS,
        "anonymousId": IDS,
        "properties": st.one_of(FIELDS, CONSENT_PROPERTIES),
        "traits": FIELDS,
        "context": st.one_of(CONTEXT, st.just("not an object")),
        "timestamp": st.sampled_from(
            ["2026-03-01T11:59:00.000Z", "2026-03-01T12:00:00+02:00", "2026-03-01T12:00:01Z"]
        )
        | st.sampled_from(["yesterday", "2026-03-01"]),
    },
)
BATCH = st.lists(EVENT, max_size=8)
GPC = {"Sec-GPC": "1", "user-agent": "curl"}
HEADERS = st.sampled_from([{}, {"sec-gpc": "1"}, GPC, {"Sec-GPC": "0"}, {"user-agent": "curl"}])
# When a request arrives, against the states earlier ones left (at NOW): later, earlier, the
# same instant, and the same instant in another time zone (a merge would change the state).
RECEIVED = st.sampled_from(
    [NOW, NOW + timedelta(seconds=1), NOW - timedelta(hours=1), NOW.astimezone(PLUS_TWO)]
)

RULES: dict[str, PseudonymRules] = {
    "default": PseudonymRules(),
    "keyed-ids-and-sha256": PseudonymRules(
        fields=(
            FieldRule(path="properties.advertisingId", kind=FieldKind.ID),
            FieldRule(path="properties.email", kind=FieldKind.EMAIL, mode=HashMode.SHA256),
            FieldRule(path="traits.phone", kind=FieldKind.PHONE),
            FieldRule(path="properties.ip", kind=FieldKind.IP),
            FieldRule(path="properties.sku.email", kind=FieldKind.EMAIL),
        )
    ),
    "lists": PseudonymRules(
        fields=(
            FieldRule(path="context.ip", kind=FieldKind.IP),
            FieldRule(path="properties.sku[].email", kind=FieldKind.EMAIL),
        )
    ),
    "overlapping": PseudonymRules(
        fields=(
            FieldRule(path="properties.email", kind=FieldKind.EMAIL),
            FieldRule(path="properties", kind=FieldKind.ID),
        )
    ),
}
POLICIES: dict[str, dict[str, Any]] = {
    "default": {},
    "strips-and-event-purposes": {
        "strip": {
            Purpose.MARKETING: ("context.ip", "properties.advertisingId", "properties.sku.ip"),
            Purpose.PERSONALIZATION: ("traits",),
        },
        "event_purposes": {"Password Reset": frozenset({Purpose.NECESSARY})},
        "marketing_events": frozenset({"Ad"}),
    },
}


@contextmanager
def step(
    data_dir: Path,
    regime: Regime,
    rules: PseudonymRules,
    policy: dict[str, Any],
    suppress: bool = True,
) -> Iterator[PrivacyStep]:
    suppression = SuppressionList(data_dir / "suppressions.sqlite3", KEYS)
    if suppress:
        suppression.add(SUPPRESSED)
    privacy = PrivacyStep(
        ledger=ConsentLedger(data_dir / "ledger.ndjson"),
        pseudonymizer=KEYS,
        regime=regime,
        policy=GatePolicy(regime=regime, **policy),
        rules=rules,
        suppression=suppression,
    )
    try:
        yield privacy
    finally:
        privacy.close()


def consent(user: str, **purposes: bool) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": "Consent Updated",
        "properties": {"purposes": purposes},
        "timestamp": "2026-03-01T10:00:00Z",
    }


# States to start from, so that the generated batches meet subjects who chose from the start.
SEED = [
    consent("u1", analytics=True),
    consent("u2", analytics=True, personalization=True, marketing=True),
    consent(" u3 ", analytics=False),
    consent(TAGGED[0], analytics=True, marketing=False),
    {**consent("u4", personalization=False), "anonymousId": "2"},
]


def shared(kept: dict[str, Any], given: dict[str, Any]) -> list[tuple[str, bool]]:
    """Which top-level values of a kept event are the input's own objects (not copies)."""
    return [(key, value is given.get(key)) for key, value in kept.items()]


# Every subject the generated events can name: their consent states are compared too.
SUBJECTS = [
    KEYS.pseudonymize(i, FieldKind.ID)
    for i in ["u1", "u2", " u3 ", SUPPRESSED, *TAGGED, "u4", "0", "1", "2", "3"]
]


def consents(privacy: PrivacyStep) -> list[Any]:
    """The consent store's contents, as stored (time zones count)."""
    states = [privacy.store.state([s]) for s in SUBJECTS]
    return [None if c is None else c.model_dump(mode="json") for c in states]


def as_compared(outcome: PrivacyOutcome) -> dict[str, Any]:
    """Every field of an outcome, in a form where order counts (as in the stored lines)."""
    return {
        "kept": [orjson.dumps(e) for e in outcome.kept],
        "dropped": list(outcome.dropped.items()),
        "invalid": list(outcome.invalid.items()),
        "fields_removed": list(outcome.fields_removed.items()),
        "consent_records": outcome.consent_records,
        "suppressed": outcome.suppressed,
        "changes": outcome.changes,
    }


@pytest.mark.parametrize("rules", RULES, ids=list(RULES))
@pytest.mark.parametrize("policy", POLICIES, ids=list(POLICIES))
@pytest.mark.parametrize("regime", list(Regime), ids=[r.value for r in Regime])
@pytest.mark.parametrize("suppress", [True, False], ids=["suppressions", "no-suppressions"])
def test_the_fused_path_gives_what_the_reference_gives(
    rules: str, policy: str, regime: Regime, suppress: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        config = (regime, RULES[rules], POLICIES[policy], suppress)
        fast = stack.enter_context(step(Path(tmp) / "a", *config))
        ref = stack.enter_context(step(Path(tmp) / "b", *config))
        seed = list(enumerate(SEED))
        assert fast.process(seed, {}, NOW).consent_records == len(SEED)
        assert ref.process_reference(seed, {}, NOW).consent_records == len(SEED)

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(BATCH, HEADERS, st.booleans(), RECEIVED)
        def check(
            batch: list[dict[str, Any]], headers: dict[str, str], upstream: bool, at: datetime
        ) -> None:
            events = list(enumerate(batch))
            before = orjson.dumps(batch)
            one = fast.process(events, headers, at, upstream=upstream)
            two = ref.process_reference(events, headers, at, upstream=upstream)
            assert orjson.dumps(batch) == before  # neither path changes its input
            assert one.kept == two.kept
            assert as_compared(one) == as_compared(two)
            assert consents(fast) == consents(ref)
            # The same objects shared with the input, and the same ones copied.
            by_id = {e["messageId"]: e for e in batch}
            assert [shared(e, by_id[e["messageId"]]) for e in one.kept] == [
                shared(e, by_id[e["messageId"]]) for e in two.kept
            ]

        check()


def test_events_without_signals_keep_what_they_need_not_change(tmp_path: Path) -> None:
    """The fused path copies only the objects on the way to a changed field."""
    with step(tmp_path, Regime.OPT_OUT, PseudonymRules(), {}) as privacy:
        event = {
            "type": "track",
            "userId": "u1",
            "event": "Product Viewed",
            "properties": {"price": 19.9, "email": "Ann@Example.com"},
            "context": {"ip": "203.0.113.7", "userAgent": "bench", "library": {"name": "x"}},
        }
        (kept,) = privacy.process([(0, event)], {}, NOW).kept
    assert kept["properties"]["email"] == KEYS.pseudonymize("ann@example.com", FieldKind.EMAIL)
    assert kept["context"]["ip"] == "203.0.113.0"
    assert kept["context"]["library"] is event["context"]["library"]  # type: ignore[index]
    assert event["context"]["ip"] == "203.0.113.7"  # type: ignore[index]


@pytest.mark.parametrize("process", ["process", "process_reference"])
def test_an_event_with_nothing_to_change_is_kept_as_it_came(process: str, tmp_path: Path) -> None:
    with step(tmp_path, Regime.OPT_OUT, PseudonymRules(), {}) as privacy:
        event = {
            "type": "track",
            "userId": "u1",
            "event": "Product Viewed",
            "properties": {"price": 19.9, "email": None, "phone": TAGGED[0]},
            "context": {"ip": "203.0.113.0", "traits": {"name": "Ann"}},
        }
        for _ in range(2):  # computed, then remembered
            (kept,) = getattr(privacy, process)([(0, event)], {}, NOW).kept
            assert kept is event


def test_a_subject_suppressed_between_batches_is_dropped_from_the_next(tmp_path: Path) -> None:
    with step(tmp_path, Regime.OPT_OUT, PseudonymRules(), {}) as privacy:
        event = {"type": "track", "userId": "u9", "event": "Product Viewed"}
        assert len(privacy.process([(0, event)], {}, NOW).kept) == 1
        assert privacy.suppression is not None
        privacy.suppression.add("u9")
        outcome = privacy.process([(0, event)], {}, NOW)
    assert (outcome.kept, outcome.suppressed) == ([], 1)


def test_an_unknown_purpose_rejects_the_event_not_the_request(tmp_path: Path) -> None:
    with step(tmp_path, Regime.OPT_IN, PseudonymRules(), {}) as privacy:
        bad = {
            "type": "track",
            "userId": "u1",
            "event": "Consent Updated",
            "properties": {"purposes": {"ads": True}},
        }
        good = {"type": "track", "userId": "u1", "event": "Product Viewed"}
        outcome = privacy.process([(0, bad), (1, good)], {}, NOW)
    assert list(outcome.invalid) == [0]
    assert outcome.invalid[0]["path"] == "properties.purposes.ads"
    assert outcome.invalid[0]["type"] == "invalid_consent"
    assert outcome.dropped == {"no_consent": 1}


@pytest.mark.parametrize("headers", [{}, {"sec-gpc": "1"}], ids=["no-header", "gpc"])
def test_a_signal_between_two_events_of_one_subject_governs_the_second(
    headers: dict[str, str], tmp_path: Path
) -> None:
    """Events of one subject in a row share a lookup; a signal in between ends the sharing."""
    viewed = {"type": "track", "userId": "u1", "anonymousId": "d1", "event": "Product Viewed"}
    withdrawn = {**consent("u1", analytics=False), "anonymousId": "d1"}
    batch = [viewed, viewed, withdrawn, viewed, {**viewed, "anonymousId": "d2"}, viewed]
    with (
        step(tmp_path / "a", Regime.OPT_OUT, PseudonymRules(), {}) as fast,
        step(tmp_path / "b", Regime.OPT_OUT, PseudonymRules(), {}) as ref,
    ):
        one = fast.process(list(enumerate(batch)), headers, NOW)
        two = ref.process_reference(list(enumerate(batch)), headers, NOW)
    assert as_compared(one) == as_compared(two)
    assert [e["event"] for e in one.kept] == ["Product Viewed"] * 2 + ["Consent Updated"]
    assert one.dropped == {"denied:analytics": 3}
