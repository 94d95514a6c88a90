"""Consent state: regimes, necessary, and the per-purpose merge rule."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from journeykit.consent import ConsentError, UnknownPurpose, parse_purpose
from journeykit.consent.purposes import Purpose
from journeykit.consent.state import Choice, ConsentState, ConsentUpdate, Regime, Source

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
A, M, P, N = Purpose.ANALYTICS, Purpose.MARKETING, Purpose.PERSONALIZATION, Purpose.NECESSARY


def update(at: datetime = T0, source: Source = Source.BANNER, **purposes: bool) -> ConsentUpdate:
    return ConsentUpdate(
        purposes={Purpose(k): v for k, v in purposes.items()},
        source=source,
        timestamp=at,
        notice_version="v1",
    )


def test_empty_state_under_opt_in_denies_everything_but_necessary() -> None:
    state = ConsentState()
    assert state.regime is Regime.OPT_IN
    assert [state.is_granted(p) for p in (N, A, P, M)] == [True, False, False, False]
    assert state.choice(A) is Choice.UNSET
    assert state.choice(N) is Choice.GRANTED


def test_empty_state_under_opt_out_grants_unset_purposes() -> None:
    state = ConsentState(regime=Regime.OPT_OUT)
    assert all(state.is_granted(p) for p in Purpose)


def test_opt_out_with_gpc_denial_denies_only_marketing() -> None:
    state = ConsentState.from_update(update(source=Source.GPC, marketing=False), Regime.OPT_OUT)
    assert state.is_granted(A)
    assert state.is_granted(P)
    assert not state.is_granted(M)
    assert state.purposes[M].source is Source.GPC


def test_explicit_choices_win_over_the_regime() -> None:
    state = ConsentState.from_update(update(analytics=True, marketing=False))
    assert state.is_granted(A)
    assert not state.is_granted(M)
    assert state.choice(P) is Choice.UNSET
    assert state.timestamp == T0
    assert state.notice_version == "v1"
    assert state.source is Source.BANNER


def test_necessary_cannot_be_denied_by_an_update() -> None:
    state = ConsentState.from_update(update(necessary=False, analytics=True))
    assert N not in state.purposes
    assert state.is_granted(N)


def test_later_timestamp_wins_per_purpose() -> None:
    state = ConsentState.from_update(update(T0, analytics=True, marketing=True))
    state = state.merge(update(T0 + timedelta(hours=2), source=Source.GPC, marketing=False))
    # An older signal arrives late: it may only change purposes it is newer for.
    state = state.merge(update(T0 + timedelta(hours=1), analytics=False, marketing=True))
    assert not state.is_granted(A)  # hour 1 beats hour 0
    assert not state.is_granted(M)  # hour 2 beats hour 1
    assert state.purposes[M].source is Source.GPC
    assert state.timestamp == T0 + timedelta(hours=2)
    assert state.source is Source.GPC


def test_a_tie_is_won_by_the_denial_in_either_order() -> None:
    grant, deny = update(analytics=True), update(analytics=False)
    assert not ConsentState().merge(grant).merge(deny).is_granted(A)
    assert not ConsentState().merge(deny).merge(grant).is_granted(A)


def test_an_older_update_changes_nothing() -> None:
    state = ConsentState.from_update(update(T0, analytics=True))
    older = update(T0 - timedelta(days=1), analytics=False)
    assert state.merge(older) is state


def test_merge_returns_a_new_state_and_leaves_the_old_one() -> None:
    before = ConsentState.from_update(update(analytics=True))
    after = before.merge(update(T0 + timedelta(seconds=1), analytics=False))
    assert before.is_granted(A)
    assert not after.is_granted(A)


def test_states_are_immutable() -> None:
    state = ConsentState.from_update(update(analytics=True))
    with pytest.raises(ValidationError):
        state.regime = Regime.OPT_OUT  # type: ignore[misc]
    with pytest.raises(TypeError):
        state.purposes[M] = state.purposes[A]  # type: ignore[index]


def test_state_round_trips_through_json() -> None:
    state = ConsentState.from_update(update(analytics=True, marketing=False), Regime.OPT_OUT)
    dumped = state.model_dump(mode="json")
    assert dumped["purposes"]["analytics"]["granted"] is True
    assert ConsentState.model_validate_json(state.model_dump_json()) == state


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValidationError, match="timestamp"):
        ConsentUpdate(purposes={}, source=Source.API, timestamp=datetime(2025, 1, 1))


def test_unknown_purpose_is_a_consent_error_listing_valid_ones() -> None:
    with pytest.raises(UnknownPurpose) as info:
        parse_purpose("ads", "properties.purposes.ads")
    assert isinstance(info.value, ConsentError)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == (
        "properties.purposes.ads: unknown purpose 'ads'; "
        "valid purposes are: necessary, analytics, personalization, marketing"
    )
    assert parse_purpose(" Analytics ") is A


PLUS_TWO = timezone(timedelta(hours=2))
INSTANTS = st.sampled_from([T0, T0 + timedelta(seconds=1), T0 - timedelta(seconds=1)]).flatmap(
    lambda at: st.sampled_from([at, at.astimezone(PLUS_TWO)])  # one instant, two time zones
)
UPDATES = st.builds(
    ConsentUpdate,
    purposes=st.dictionaries(st.sampled_from(list(Purpose)), st.booleans(), max_size=3),
    source=st.sampled_from(list(Source)),
    timestamp=INSTANTS,
    notice_version=st.sampled_from([None, "v1", "v2"]),
)
STATES = st.tuples(st.sampled_from(list(Regime)), st.lists(UPDATES, max_size=3)).map(
    lambda drawn: functools.reduce(ConsentState.merge, drawn[1], ConsentState(regime=drawn[0]))
)


def same(a: ConsentState, b: ConsentState) -> bool:
    """Equal, and equal as stored (a time zone counts), with the same fields set."""
    return (
        a == b
        and a.model_dump(mode="json") == b.model_dump(mode="json")
        and a.model_fields_set == b.model_fields_set
    )


@settings(max_examples=400, deadline=None)
@given(STATES, UPDATES)
def test_a_state_absorbs_an_update_exactly_when_merging_it_changes_nothing(
    state: ConsentState, signal: ConsentUpdate
) -> None:
    merged = state.merge(signal)
    assert state.absorbs(signal) is same(merged, state)
    assert merged.absorbs(signal)  # merging is idempotent
    assert same(merged.merge(signal), merged)


def test_a_gpc_header_sent_again_later_is_merged_again() -> None:
    """A new request's ``Sec-GPC`` moves the state's latest signal on: not absorbed."""
    gpc = update(source=Source.GPC, marketing=False)
    state = ConsentState.from_update(gpc, Regime.OPT_OUT)
    assert state.absorbs(gpc)
    assert state.absorbs(update(T0 - timedelta(hours=1), source=Source.GPC, marketing=False))
    later = update(T0 + timedelta(seconds=1), source=Source.GPC, marketing=False)
    assert not state.absorbs(later)
    assert state.merge(later).timestamp == later.timestamp
    assert not state.absorbs(update(source=Source.BANNER, marketing=False))  # another source


def test_a_new_subjects_state_is_the_merge_into_an_empty_state() -> None:
    for regime in Regime:
        signal = update(analytics=True, marketing=False)
        assert same(
            ConsentState.from_update(signal, regime), ConsentState(regime=regime).merge(signal)
        )


@settings(max_examples=200, deadline=None)
@given(STATES)
def test_granted_is_every_purpose_is_granted_answers_true_for(state: ConsentState) -> None:
    assert state.granted() == {p for p in Purpose if state.is_granted(p)}
    assert state.granted() is state.granted()  # worked out once
