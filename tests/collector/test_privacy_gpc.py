"""A request with ``Sec-GPC: 1``: its denial is merged once per subject, and only if it changes
something; what comes out is what the reference path gives (``test_privacy_fast.py`` checks
that on generated batches, these on the cases that matter)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import PSEUDONYM_KEY
from pydantic import SecretStr

from journeykit.collector._consent_store import ConsentStore
from journeykit.collector.privacy import PrivacyOutcome, PrivacyStep
from journeykit.consent import (
    ConsentLedger,
    FieldKind,
    Pseudonymizer,
    PseudonymKey,
    Purpose,
    Regime,
    Source,
)

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
KEYS = Pseudonymizer([PseudonymKey(key_id="k1", secret=SecretStr(PSEUDONYM_KEY))])
GPC = {"sec-gpc": "1", "user-agent": "Brave"}


@contextmanager
def step(data_dir: Path, regime: Regime = Regime.OPT_OUT) -> Iterator[PrivacyStep]:
    privacy = PrivacyStep(
        ledger=ConsentLedger(data_dir / "ledger.ndjson"), pseudonymizer=KEYS, regime=regime
    )
    try:
        yield privacy
    finally:
        privacy.close()


def viewed(n: int, **ids: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Product Viewed",
        "messageId": f"m{n}",
        "properties": {"product_id": "p1"},
        "context": {"ip": "203.0.113.7", "userAgent": "Brave"},
        **ids,
    }


def subject(raw: str) -> str:
    return KEYS.pseudonymize(raw, FieldKind.ID)


def both(
    tmp_path: Path, events: list[dict[str, Any]], at: datetime = NOW
) -> tuple[PrivacyOutcome, PrivacyStep, PrivacyStep]:
    """``events`` through ``process`` and ``process_reference``, on two fresh steps."""
    with step(tmp_path / "fast") as fast, step(tmp_path / "ref") as ref:
        pairs = list(enumerate(events))
        one = fast.process(pairs, GPC, at)
        two = ref.process_reference(pairs, GPC, at)
        assert (one.kept, one.dropped, one.fields_removed) == (
            two.kept,
            two.dropped,
            two.fields_removed,
        )
        assert one.changes == two.changes
        for raw in ("u1", "d1", "d2"):
            assert fast.store.state([subject(raw)]) == ref.store.state([subject(raw)])
        return one, fast, ref


def test_the_denial_is_recorded_once_per_subject(tmp_path: Path) -> None:
    events = [
        viewed(0, userId="u1", anonymousId="d1"),
        viewed(1, userId="u1", anonymousId="d1"),
        viewed(2, anonymousId="d2"),
        viewed(3, userId="u1"),
    ]
    outcome, _, _ = both(tmp_path, events)
    assert [(c.subject, c.linked_ids, c.denied) for c in outcome.changes] == [
        (subject("u1"), [subject("d1")], [Purpose.MARKETING]),
        (subject("d2"), [], [Purpose.MARKETING]),
    ]
    assert {c.source for c in outcome.changes} == {Source.GPC}
    assert outcome.changes[0].user_agent == "Brave"
    # Marketing denied: the default policy strips the IP and the user agent.
    assert [e["context"] for e in outcome.kept] == [{}] * 4
    assert outcome.dropped == {}


def test_an_events_own_signal_dated_after_its_receipt_does_not_outrank_the_header(
    tmp_path: Path,
) -> None:
    # A grant dated a minute after the request arrived (a device clock ahead) is dated when
    # received: it ties with the header's denial, and a tie is decided for the denial.
    later = (NOW + timedelta(minutes=1)).isoformat()
    grant = {
        "type": "track",
        "userId": "u1",
        "event": "Consent Updated",
        "properties": {"purposes": {"marketing": True}},
        "timestamp": later,
    }
    events = [viewed(0, userId="u1"), grant, viewed(2, userId="u1")]
    outcome, fast, _ = both(tmp_path, events)
    assert [(c.source, c.granted, c.denied) for c in outcome.changes] == [
        (Source.GPC, [], [Purpose.MARKETING]),
    ]
    first, last = outcome.kept[0], outcome.kept[-1]
    assert first["context"] == {}
    assert last["context"] == {}
    state = fast.store.state([subject("u1")])
    assert state is not None
    assert not state.is_granted(Purpose.MARKETING)


@pytest.mark.parametrize(
    "later",
    [timedelta(0), timedelta(seconds=1), -timedelta(hours=1)],
    ids=["same-request-time", "new-request-time", "older-request-time"],
)
def test_a_header_that_changes_nothing_leaves_the_state_as_recorded(
    later: timedelta, tmp_path: Path
) -> None:
    """A re-asserted denial is not recorded, so it is not kept either: the state stays the
    one a replay of the ledger gives (its time is the first signal's), on both paths."""
    events = [viewed(0, userId="u1"), viewed(1, userId="u1")]
    with step(tmp_path / "fast") as fast, step(tmp_path / "ref") as ref:
        pairs = list(enumerate(events))
        fast.record(fast.process(pairs, GPC, NOW).changes)
        ref.process_reference(pairs, GPC, NOW)
        before = fast.store.state([subject("u1")]), ref.store.state([subject("u1")])
        one = fast.process(pairs, GPC, NOW + later)
        two = ref.process_reference(pairs, GPC, NOW + later)
        after = fast.store.state([subject("u1")]), ref.store.state([subject("u1")])
        replayed = ConsentStore(Regime.OPT_OUT)
        replayed.rebuild(fast.ledger.path)
        rebuilt = replayed.state([subject("u1")])
    assert one.changes == two.changes == []
    assert after[0] == before[0]
    assert after[1] == before[1]
    assert after[0] is not None
    assert after[0].timestamp == NOW
    assert rebuilt == after[0]  # what another worker or a restart reads from the ledger


def test_under_opt_in_the_header_does_not_grant_anything(tmp_path: Path) -> None:
    with step(tmp_path, Regime.OPT_IN) as privacy:
        outcome = privacy.process([(0, viewed(0, userId="u1"))], GPC, NOW)
    assert outcome.kept == []
    assert outcome.dropped == {"denied:analytics": 1}
    assert [c.denied for c in outcome.changes] == [[Purpose.MARKETING]]


@pytest.mark.parametrize(
    "raw",
    [
        [],
        [(b"sec-gpc", b"1")],
        [(b"Sec-GPC", b" 1 ")],
        [(b"SEC-GPC", b"0")],
        [(b"sec-gpc", b"0"), (b"sec-gpc", b"1")],  # the first one speaks
        [(b"sec-gpc", b"1"), (b"Sec-Gpc", b"0")],
        [(b"user-agent", b"Brave"), (b"sec-gpc", b"yes")],
    ],
)
def test_a_starlette_requests_header_is_read_as_parse_gpc_reads_every_header(
    raw: list[tuple[bytes, bytes]],
) -> None:
    from starlette.datastructures import Headers

    from journeykit.collector.privacy import _gpc
    from journeykit.consent import parse_gpc

    headers = Headers(raw=[(name.lower(), value) for name, value in raw])  # as ASGI sends them
    pairs = [(name.decode(), value.decode()) for name, value in raw]
    assert _gpc(headers, NOW) == parse_gpc(pairs, now=NOW)
