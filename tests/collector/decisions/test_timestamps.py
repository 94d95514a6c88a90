"""Event times: the cached, by-position parse agrees with ``datetime.fromisoformat`` everywhere.

The oracle is ``math.floor(datetime.fromisoformat(s).timestamp())`` capped at ``now`` (``now``
when it raises). Strings of the collector's form, the same with one character changed or
added, and strings built from out-of-range fields go through one parser in order, so a
malformed string is parsed right after the valid one whose hour and second it would borrow.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journeykit.collector.decisions._timestamps import TimeParser

NOW = 1_800_000_000
FAR = 253_402_300_800  # year 10000: no valid time is capped


def oracle(raw: str, now: int) -> int:
    try:
        ts = math.floor(datetime.fromisoformat(raw).timestamp())
    except (ValueError, OverflowError):
        return now
    return min(ts, now)


_times = st.datetimes(
    min_value=datetime(1, 1, 2),  # a day inside the range: UTC of any zone stays in it
    max_value=datetime(9999, 12, 30),
    timezones=st.just(UTC),
)
_near_now = st.integers(-90 * 86400, 90 * 86400).map(
    lambda s: datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=s, milliseconds=s % 1000)
)


def collector_form(moment: datetime, zone: str) -> str:
    """The collector's own form: ``2026-03-02T09:00:00.123Z`` (or ``+00:00``)."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", zone)


_forms = st.builds(collector_form, _times | _near_now, st.sampled_from(["Z", "+00:00"]))
# What a near-miss puts in a position: separators, letters, other scripts' digits, nothing.
_chars = st.sampled_from([*"0123456789:-.,TtZz+ _x", "\u0663", "\uff12", "\u00b2", "\u00e9", ""])


@st.composite
def near_misses(draw: st.DrawFn) -> list[str]:
    """A valid collector-form string, then versions with one position replaced or inserted."""
    valid = draw(_forms)
    out = [valid]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(valid)))
        keep = draw(st.booleans())  # insert before position i, else replace it
        out.append(valid[:i] + draw(_chars) + valid[i if keep else i + 1 :])
    return out


@st.composite
def fields(draw: st.DrawFn) -> str:
    """Dates and times from fields that may be out of range: leap days, hour 24, second 60."""
    year = draw(st.sampled_from([1, 1900, 1970, 2000, 2024, 2025, 2026, 2100, 9999]))
    month, day = draw(st.integers(0, 13)), draw(st.sampled_from([0, 1, 28, 29, 30, 31, 32]))
    hour, minute = draw(st.sampled_from([0, 9, 23, 24, 25])), draw(st.sampled_from([0, 59, 60]))
    second = draw(st.sampled_from([0, 59, 60, 61]))
    fraction = draw(st.sampled_from(["", ".", ".5", ".123", ".123456", ".1234567", ",123"]))
    zone = draw(st.sampled_from(["Z", "+00:00", "-00:00", "+01:00", "-05:30", "+14:00", "z"]))
    sep = draw(st.sampled_from(["T", " "]))
    date = f"{year:04d}-{month:02d}-{day:02d}"
    return f"{date}{sep}{hour:02d}:{minute:02d}:{second:02d}{fraction}{zone}"


@settings(max_examples=400)
@given(st.lists(near_misses(), min_size=1, max_size=5), st.sampled_from([NOW, FAR]))
def test_the_collector_form_and_near_misses_parse_as_fromisoformat(
    groups: list[list[str]], now: int
) -> None:
    parser = TimeParser()
    for raw in [s for group in groups for s in group] * 2:  # twice: cached answers too
        assert parser.parse(raw, now) == oracle(raw, now), raw


@settings(max_examples=400)
@given(st.lists(fields(), min_size=1, max_size=8), st.sampled_from([NOW, FAR]))
def test_out_of_range_fields_parse_as_fromisoformat(strings: list[str], now: int) -> None:
    parser = TimeParser()
    for raw in strings * 2:
        assert parser.parse(raw, now) == oracle(raw, now), raw


@pytest.mark.parametrize(
    ("first", "then"),
    [
        # Other scripts' digits pass str.isdigit; fromisoformat rejects them.
        ("2026-03-02T09:00:00.123Z", "2026-03-02T09:00:00.1\u06633Z"),
        ("2026-03-02T10:00:00.5+01:00", "2026-03-02T10:00:00.1\u06633+01:00"),
        ("2026-03-02T09:00:00.123Z", "2026-03-02T09:0\u0663:00.123Z"),
        ("2026-03-02T09:00:00.123Z", "2026-03-02T09:00:00,123Z"),  # not the collector's form
        ("2024-02-29T09:00:00.000Z", "2025-02-29T09:00:00.000Z"),
        ("2026-03-02T23:59:59.999Z", "2026-03-02T24:00:00.000Z"),
        ("2026-03-02T09:00:00.000Z", "2026-W10-1T09:00:00.000Z"),  # a week date: same hour
    ],
)
def test_a_cached_hour_or_second_is_never_lent(first: str, then: str) -> None:
    parser = TimeParser()
    assert parser.parse(first, FAR) == oracle(first, FAR)
    assert parser.parse(then, FAR) == oracle(then, FAR)


def test_every_second_of_a_day_in_the_collector_form() -> None:
    parser = TimeParser()
    start = datetime(2024, 2, 29, tzinfo=UTC)  # a leap day
    for s in range(0, 86_400, 7):
        raw = collector_form(start + timedelta(seconds=s, milliseconds=s % 1000), "Z")
        assert parser.parse(raw, FAR) == int(start.timestamp()) + s
