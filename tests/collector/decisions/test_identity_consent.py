"""Identity merge (identify, alias, events with both ids) and consent withdrawal."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from decisions_helpers import DAY, HOUR, Clock, add, alias, consent, identify, order, track, view

from journeykit.collector.decisions import DecisionEngine


def _browse_anonymously(engine: DecisionEngine, clock: Clock) -> None:
    t = clock.now - 3 * HOUR
    engine.update(
        [
            view("anon-1", "p1", t, anonymous=True),
            view("anon-1", "p2", t + 60, anonymous=True),
            view("anon-1", "p3", t + 120, anonymous=True),
            add("anon-1", "p3", t + 180, anonymous=True),
        ]
    )


def test_identify_merges_browsing_before_login(engine: DecisionEngine, clock: Clock) -> None:
    _browse_anonymously(engine, clock)
    engine.update([order("u1", clock.now - 40 * DAY, 120.0, ["p0"])])
    result = engine.update([identify("u1", "anon-1", clock.now - 2 * HOUR)])
    assert result.merged == 1
    d = engine.decide("u1", personalization_granted=True)
    assert "cart_abandoner" in d.segments  # the anonymous cart counts
    assert "value_loyal" in d.segments  # and the user's own order still does
    assert d.next_best_action is not None
    assert d.next_best_action.reason.startswith("1 item(s) worth 50 USD")
    # The anonymous id now answers with the user's profile.
    assert engine.decide("anon-1", personalization_granted=True).segments == d.segments


def test_alias_merges_and_later_anonymous_events_reach_the_user(
    engine: DecisionEngine, clock: Clock
) -> None:
    _browse_anonymously(engine, clock)
    engine.update([alias("u2", "anon-1", clock.now - 2 * HOUR)])
    engine.update([order("anon-1", clock.now - HOUR, 50.0, ["p3"])])
    engine.update(
        [track("anon-1", "Product Viewed", clock.now - 60, anonymous=True, product_id="p4")]
    )
    d = engine.decide("u2", personalization_granted=True)
    assert "cart_abandoner" not in d.segments  # the order bought the merged cart
    assert "value_low" in d.segments
    assert "p3" not in [r.product_id for r in d.recommendations]


def test_an_event_with_both_ids_merges_once(engine: DecisionEngine, clock: Clock) -> None:
    _browse_anonymously(engine, clock)
    both = view("u3", "p5", clock.now - HOUR)
    both["anonymousId"] = "anon-1"
    assert engine.update([both, dict(both, messageId="again")]).merged == 1
    d = engine.decide("u3", personalization_granted=True)
    assert "high_intent" in d.segments  # 4 views + an add, across both ids


@pytest.mark.parametrize("flushed_first", [True, False], ids=["link stored", "link queued"])
def test_a_shared_device_does_not_make_one_person_of_two_users(
    engine: DecisionEngine, clock: Clock, flushed_first: bool
) -> None:
    # A shared device: the anonymous id belongs to u1 (its cart with it) when u2 signs in on
    # it. u2's events count for u2 alone; u1 keeps its profile, and the id stays u1's.
    _browse_anonymously(engine, clock)
    engine.update([identify("u1", "anon-1", clock.now - 2 * HOUR)])
    if flushed_first:
        assert engine.flush()
    both = view("u2", "p5", clock.now - HOUR)
    both["anonymousId"] = "anon-1"
    engine.update([both, identify("u2", "anon-1", clock.now - HOUR + 1)])
    for _ in range(2):  # queued, then written
        u2 = engine.decide("u2", personalization_granted=True)
        assert u2.next_best_action is None or not u2.next_best_action.reason.startswith("1 item")
        assert "cart_abandoner" not in u2.segments
        u1 = engine.decide("u1", personalization_granted=True)
        assert "cart_abandoner" in u1.segments
        assert engine.decide("anon-1", personalization_granted=True).segments == u1.segments
        assert engine.flush()
    profile = engine.profile("u2")
    assert profile is not None
    assert profile["c"]["Product Viewed"][0] == 1  # its own view, none of u1's
    assert engine.stats["merges_refused"] == 2  # the view and the identify, each refused


def test_a_sign_up_alias_from_a_shared_device_is_kept_apart(
    engine: DecisionEngine, clock: Clock
) -> None:
    # analytics.js sends alias(previousId=<the device's anonymous id>) when u2 signs up on
    # u1's device: the id is u1's already, so u1 is not merged into the newcomer.
    _browse_anonymously(engine, clock)
    engine.update([identify("u1", "anon-1", clock.now - 2 * HOUR)])
    assert engine.flush()
    engine.update([alias("u2", "anon-1", clock.now - HOUR)])
    assert "cart_abandoner" not in engine.decide("u2", personalization_granted=True).segments
    assert engine.flush()
    assert "cart_abandoner" in engine.decide("u1", personalization_granted=True).segments
    assert engine.stats["merges_refused"] == 1


def test_an_alias_renaming_a_user_merges_the_profiles(engine: DecisionEngine, clock: Clock) -> None:
    # alias(previousId=u1, userId=u2): the user's own id changed; its profile goes along.
    _browse_anonymously(engine, clock)
    engine.update([identify("u1", "anon-1", clock.now - 2 * HOUR)])
    assert engine.flush()
    engine.update([alias("u2", "u1", clock.now - HOUR)])
    d = engine.decide("u2", personalization_granted=True)
    assert d.next_best_action is not None
    assert d.next_best_action.reason.startswith("1 item(s) worth 50 USD")
    assert engine.flush()
    assert engine.decide("anon-1", personalization_granted=True).segments == d.segments
    assert engine.stats["merges_refused"] == 0


def test_merge_inside_one_batch(engine: DecisionEngine, clock: Clock) -> None:
    t = clock.now - 3 * HOUR
    engine.update(
        [
            add("anon-9", "p1", t, anonymous=True),
            identify("u9", "anon-9", t + 60),
            add("u9", "p2", t + 120),
        ]
    )
    d = engine.decide("u9", personalization_granted=True)
    assert d.next_best_action is not None
    assert d.next_best_action.reason.startswith("2 item(s) worth 100 USD")


def test_withdrawing_consent_removes_decisions(engine: DecisionEngine, clock: Clock) -> None:
    engine.update(
        [consent("u5", clock.now - 2 * DAY, True), order("u5", clock.now - 31 * DAY, 700.0, ["p"])]
    )
    before = engine.decide("u5")
    assert before.personalization == "granted"
    assert "value_elite" in before.segments
    assert before.next_best_action is not None
    engine.update([consent("u5", clock.now - HOUR, False)])
    after = engine.decide("u5")
    assert after.model_dump() == {
        "subject": "u5",
        "personalization": "not_consented",
        "segments": [],
        "stage": None,
        "next_best_action": None,
        "recommendations": [],
        "rules_fired": [],
    }
    # The collector's consent store is the authority when it speaks.
    assert engine.decide("u5", personalization_granted=False) == after
    many = engine.decide_many(["u5", "other"], {"u5": False, "other": True})
    assert many["u5"].personalization == "not_consented"
    assert many["other"].personalization == "granted"


def test_consent_given_before_login_carries_over(engine: DecisionEngine, clock: Clock) -> None:
    engine.update([{**consent("anon-7", clock.now - DAY, True), "anonymousId": "anon-7"}])
    engine.update([identify("u7", "anon-7", clock.now - HOUR)])
    assert engine.decide("u7").personalization == "granted"


def test_forget_erases_the_profile(engine: DecisionEngine, clock: Clock) -> None:
    engine.update([order("u8", clock.now - DAY, 700.0, ["p"])])
    assert "value_elite" in engine.decide("u8", personalization_granted=True).segments
    assert engine.forget(["u8"]) == 1
    assert engine.decide("u8", personalization_granted=True).segments == []
    assert engine.forget(["u8"]) == 0


def test_events_without_a_subject_are_counted(engine: DecisionEngine, clock: Clock) -> None:
    nobody = track("x", "Product Viewed", clock.now)
    del nobody["userId"]
    result = engine.update([nobody, view("u", "p", clock.now)])
    assert result.applied == 1
    assert result.skipped == {"no_subject": 1}
    assert engine.stats["events_skipped_no_subject"] == 1


def test_a_device_id_answers_with_its_users_consent(engine: DecisionEngine, clock: Clock) -> None:
    # The device's own record grants (the banner before login); the user withdrew later.
    _browse_anonymously(engine, clock)
    engine.update([identify("u9", "anon-1", clock.now - 2 * HOUR)])
    consents = {"anon-1": True, "u9": False}
    asked: list[dict[str, list[str]]] = []

    def owner_consent(people: Mapping[str, list[str]]) -> dict[str, bool]:
        asked.append(dict(people))  # the owner first: its record wins over the device's
        return {subject: consents[ids[0]] for subject, ids in people.items()}

    engine.owner_consent = owner_consent
    decision = engine.decide("anon-1", personalization_granted=True)
    assert decision.personalization == "not_consented"
    assert asked == [{"anon-1": ["u9", "anon-1"]}]
    consents["u9"] = True
    assert engine.decide("anon-1", personalization_granted=True).segments


def test_a_person_sees_one_variant_by_either_id(engine: DecisionEngine, clock: Clock) -> None:
    t = clock.now - 3 * HOUR
    for n in range(40):  # enough people that a variant chosen by the asked id would differ
        device = f"device-{n}"
        engine.update(
            [
                *(view(device, f"p{i}", t + i, anonymous=True) for i in range(3)),
                add(device, "p1", t + 60, anonymous=True),
                identify(f"user-{n}", device, clock.now - HOUR),
            ]
        )
    offers = [
        [
            engine.decide(subject, personalization_granted=True).next_best_action
            for subject in (f"user-{n}", f"device-{n}")
        ]
        for n in range(40)
    ]
    assert all(by_user is not None and by_user.params for by_user, _ in offers)
    assert len({str(by_user.params) for by_user, _ in offers if by_user}) > 1  # variants
    assert all(by_user == by_device for by_user, by_device in offers)


def test_a_user_renamed_many_times_stays_one_person(engine: DecisionEngine, clock: Clock) -> None:
    # Six renames (u1 -> ... -> u7): past the hops a read follows, a write must not start a
    # new profile over a stored alias; it points what it meets at the chain's end instead.
    t = clock.now - 10 * HOUR
    engine.update([order("u1", t, 200.0, ["p1"])])
    for i in range(1, 7):
        engine.update([alias(f"u{i + 1}", f"u{i}", t + i * 60)])
    engine.update([order("u2", t + 3700, 50.0, ["p3"])])
    engine.update([order("u1", t + 3800, 25.0, ["p4"])])
    profile = engine.profile("u7")
    assert profile is not None
    assert (profile["orders"], profile["rev"]) == (3, {"USD": 275.0})
    for i in (1, 2):
        assert engine.decide(f"u{i}", personalization_granted=True).segments == (
            engine.decide("u7", personalization_granted=True).segments
        )
