"""Consent recorded, enforced and proven; personal data pseudonymized before it is stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import PSEUDONYM_KEY, RunningCollector, free_port, running_collector
from pydantic import SecretStr

from journeykit.consent import FieldKind, Pseudonymizer, PseudonymKey, verify_ledger
from journeykit.consent.history import iter_records

PSEUDONYMIZER = Pseudonymizer([PseudonymKey(key_id="k1", secret=SecretStr(PSEUDONYM_KEY))])


def pseudonym(value: str, kind: FieldKind = FieldKind.ID) -> str:
    return PSEUDONYMIZER.pseudonymize(value, kind)


def send(running: RunningCollector, *events: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = httpx.post(
        running.url + "/v1/batch",
        json={"batch": list(events)},
        headers={**running.auth(), **headers},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def track(user: str = "u1", event: str = "Product Viewed", **extra: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "properties": {}, **extra}


def consent(user: str = "u1", **purposes: bool) -> dict[str, Any]:
    return track(
        user,
        "Consent Updated",
        properties={"purposes": purposes, "notice_version": "2026-11", "source": "banner"},
    )


@pytest.fixture
def opt_in(tmp_path: Path) -> Any:
    with running_collector(tmp_path / "data", consent_regime="opt_in") as running:
        yield running


def ledger_records(running: RunningCollector) -> list[Any]:
    return list(iter_records(running.data_dir / "consent" / "ledger.ndjson"))


def test_opt_in_drops_events_without_consent_and_says_so(opt_in: RunningCollector) -> None:
    answer = send(opt_in, track(), track())
    assert answer["accepted"] == 0
    assert answer["dropped"] == {"no_consent": 2}
    assert opt_in.events == []


def test_consent_message_is_recorded_and_then_events_flow(opt_in: RunningCollector) -> None:
    answer = send(opt_in, consent(analytics=True, marketing=False), track())
    assert answer["accepted"] == 2  # the consent message itself is kept as an event too
    (record,) = ledger_records(opt_in)
    assert record.subject == pseudonym("u1")
    assert record.granted == ("analytics",)
    assert record.denied == ("marketing",)
    assert record.source == "banner"
    assert record.notice_version == "2026-11"
    assert "u1" not in (opt_in.data_dir / "consent" / "ledger.ndjson").read_text()
    assert verify_ledger(opt_in.data_dir / "consent" / "ledger.ndjson").ok


def test_the_collectors_ledger_passes_the_cli_verify(opt_in: RunningCollector) -> None:
    send(opt_in, consent("a", analytics=True), consent("b", analytics=False))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "journeykit.collector",
            "consent",
            "verify",
            "--data-dir",
            str(opt_in.data_dir),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 records" in result.stdout


def test_denied_purpose_drops_with_its_reason(opt_in: RunningCollector) -> None:
    send(opt_in, consent(analytics=False))
    answer = send(opt_in, track())
    assert answer["dropped"] == {"denied:analytics": 1}


def test_empty_category_preferences_deny_everything(opt_in: RunningCollector) -> None:
    event = track(context={"consent": {"categoryPreferences": {}}})
    answer = send(opt_in, event)
    assert answer["dropped"] == {"denied:analytics": 1}
    (record,) = ledger_records(opt_in)
    assert set(record.denied) == {"analytics", "personalization", "marketing"}


def test_repeated_preferences_are_recorded_once(opt_in: RunningCollector) -> None:
    prefs = {"consent": {"categoryPreferences": {"Analytics": True, "Advertising": False}}}
    answer = send(opt_in, *[track(context=prefs) for _ in range(5)])
    assert answer["accepted"] == 5
    send(opt_in, track(context=prefs))
    assert len(ledger_records(opt_in)) == 1


def test_gpc_header_denies_marketing_and_strips_its_fields(opt_in: RunningCollector) -> None:
    send(opt_in, consent(analytics=True, marketing=True))
    event = track(context={"ip": "203.0.113.9", "device": {"advertisingId": "ad-1"}})
    answer = send(opt_in, event, **{"Sec-GPC": "1"})
    assert answer["accepted"] == 1
    stored = opt_in.events[-1]
    assert "advertisingId" not in stored["context"].get("device", {})
    assert "ip" not in stored["context"]
    assert ledger_records(opt_in)[-1].source == "gpc"


def test_consent_before_login_carries_over(opt_in: RunningCollector) -> None:
    device = {
        "type": "track",
        "anonymousId": "anon-1",
        "event": "Consent Updated",
        "properties": {"purposes": {"analytics": True}, "source": "banner"},
    }
    send(opt_in, device)
    answer = send(opt_in, {**track("u9"), "anonymousId": "anon-1"})
    assert answer["accepted"] == 1


def test_invalid_consent_payload_is_rejected_with_its_path(opt_in: RunningCollector) -> None:
    bad = track(context={"consent": {"categoryPreferences": {"Analytics": "yes"}}})
    answer = send(opt_in, bad)
    (rejection,) = answer["rejected"]
    assert rejection["errors"][0]["type"] == "invalid_consent"
    assert rejection["errors"][0]["path"].startswith("context.consent.categoryPreferences")
    assert opt_in.rejected[0]["errors"][0]["type"] == "invalid_consent"


def test_consent_survives_a_restart(tmp_path: Path) -> None:
    with running_collector(tmp_path / "data", consent_regime="opt_in") as first:
        send(first, consent(analytics=True))
    with running_collector(tmp_path / "data", consent_regime="opt_in") as second:
        assert send(second, track())["accepted"] == 1


def test_raw_personal_data_is_pseudonymized_before_storage(collector: RunningCollector) -> None:
    already = pseudonym("known@example.com", FieldKind.EMAIL)
    send(
        collector,
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"email": "  Ann@Example.COM ", "phone": "+49 (30) 1234-567"},
        },
        track(properties={"email": already}, context={"ip": "198.51.100.77"}),
    )
    identify, tracked = collector.events
    assert identify["traits"]["email"] == pseudonym("ann@example.com", FieldKind.EMAIL)
    assert identify["traits"]["phone"] == pseudonym("+49301234567", FieldKind.PHONE)
    assert tracked["properties"]["email"] == already  # never hashed twice
    assert tracked["context"]["ip"] == "198.51.100.0"
    raw = "".join(p.read_text() for p in (collector.data_dir / "events").rglob("*.ndjson"))
    assert "Ann@Example" not in raw
    assert "1234-567" not in raw


def test_production_mode_refuses_to_start_without_a_pseudonym_key(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "JOURNEYKIT_WRITE_KEYS": "k-prod"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "journeykit.collector",
            "collector",
            "serve",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 2
    assert "JOURNEYKIT_PSEUDONYM_KEY" in result.stderr


def test_the_senders_address_is_added_truncated_when_the_event_has_none(
    collector: RunningCollector,
) -> None:
    send(collector, track(), track(context={"ip": "198.51.100.77"}))
    without, with_own = collector.events
    assert without["context"]["ip"] == "127.0.0.0"  # the test client's 127.0.0.1, cut to /24
    assert with_own["context"]["ip"] == "198.51.100.0"  # the event's own address wins


def test_a_consent_change_from_an_event_with_a_bad_address_is_recorded_without_it(
    tmp_path: Path,
) -> None:
    """``context.ip`` that is no IP address cannot fail the request after consent changed.

    The ledger refuses an address it cannot truncate; the change is recorded with no address
    (as when none was sent), so the withdrawal answers 200 and holds after a restart.
    """
    with running_collector(tmp_path / "data", consent_regime="opt_in") as first:
        send(first, consent(analytics=True))
        withdrawal = consent(analytics=False)
        withdrawal["context"] = {"ip": "not-an-address"}
        assert send(first, withdrawal)["accepted"] == 1
        last = ledger_records(first)[-1]
        assert last.denied == ("analytics",)
        assert last.ip is None
        assert send(first, track())["dropped"] == {"denied:analytics": 1}
    with running_collector(tmp_path / "data", consent_regime="opt_in") as second:
        assert send(second, track())["dropped"] == {"denied:analytics": 1}


def test_a_signal_naming_no_purpose_leaves_consent_as_the_ledger_has_it(tmp_path: Path) -> None:
    """Only ``necessary`` in Segment's preferences changes nothing and records nothing.

    So it cannot leave an empty consent state in memory for the user, hiding the consent their
    device gave, that a restart (which replays the ledger) would not have.
    """
    device = {
        "type": "track",
        "anonymousId": "anon-1",
        "event": "Consent Updated",
        "properties": {"purposes": {"analytics": True}, "source": "banner"},
    }
    only_necessary = {"consent": {"categoryPreferences": {"necessary": True}}}
    signed_in = {**track("u9"), "anonymousId": "anon-1"}
    with running_collector(tmp_path / "data", consent_regime="opt_in") as first:
        send(first, device)
        assert send(first, {**signed_in, "context": only_necessary})["accepted"] == 1
        assert send(first, signed_in)["accepted"] == 1
        assert len(ledger_records(first)) == 1
    with running_collector(tmp_path / "data", consent_regime="opt_in") as second:
        assert send(second, signed_in)["accepted"] == 1


def test_a_choice_dated_in_the_future_does_not_outrank_a_later_withdrawal(
    opt_in: RunningCollector,
) -> None:
    # A device clock five years ahead, and no sentAt to correct it by.
    grant = consent(analytics=True)
    grant["timestamp"] = "2031-06-01T00:00:00.000Z"
    assert send(opt_in, grant)["accepted"] == 1
    assert send(opt_in, consent(analytics=False))["accepted"] == 1
    assert send(opt_in, track())["dropped"] == {"denied:analytics": 1}
    records = ledger_records(opt_in)
    assert [tuple(r.denied) for r in records] == [(), ("analytics",)]
    assert records[0].at < "2031"  # recorded when received, not when the device said


def test_gpc_on_a_signed_in_page_keeps_the_devices_other_choices(
    opt_in: RunningCollector,
) -> None:
    # Analytics granted on the device before sign-in; Sec-GPC denies marketing alone.
    granted = consent(analytics=True)
    del granted["userId"]
    granted["anonymousId"] = "dev-9"
    assert send(opt_in, granted)["accepted"] == 1
    signed_in = {**track("u9"), "anonymousId": "dev-9"}
    assert send(opt_in, signed_in, **{"Sec-GPC": "1"})["accepted"] == 1
    assert send(opt_in, {**signed_in, "event": "Next Page"})["accepted"] == 1
    assert send(opt_in, track("u9", "Alone"))["accepted"] == 1  # the user's own state
    # ...and a device never takes a signed-in user's grants (the next person on it).
    user_only = consent("u8", analytics=True)
    assert send(opt_in, user_only)["accepted"] == 1
    shared = {**track("u8"), "anonymousId": "dev-8"}
    assert send(opt_in, shared, **{"Sec-GPC": "1"})["accepted"] == 1
    anonymous = {"type": "page", "anonymousId": "dev-8", "name": "Home"}
    assert send(opt_in, anonymous)["accepted"] == 0


def refused_then_right() -> tuple[dict[str, Any], dict[str, Any]]:
    """Same messageId twice: the first carries a purpose that is none, the second is right."""
    bad = consent(ads=True)
    good = consent(analytics=True)
    bad["messageId"] = good["messageId"] = "c-twice"
    return bad, good


def test_a_copy_after_a_refused_first_copy_in_one_batch_is_stored(
    opt_in: RunningCollector,
) -> None:
    bad, good = refused_then_right()
    answer = send(opt_in, bad, good, dict(good))
    assert (answer["accepted"], answer["duplicates"]) == (1, 1)
    assert [r["index"] for r in answer["rejected"]] == [0]
    assert [e["messageId"] for e in opt_in.events] == ["c-twice"]
    assert len(ledger_records(opt_in)) == 1


def test_every_event_is_in_the_answer_when_a_refused_copy_comes_again(
    opt_in: RunningCollector,
) -> None:
    # Two events of subjects without consent, then a refused copy and its good second copy:
    # the second pass over the batch (for the second copy) overwrote the first pass's counts.
    bad, good = refused_then_right()
    nobody = [
        {"type": "track", "userId": f"nobody-{i}", "event": "E", "messageId": f"n-{i}"}
        for i in range(2)
    ]
    answer = send(opt_in, *nobody, bad, good)
    assert answer["dropped"] == {"no_consent": 2}
    assert answer["accepted"] == 1
    accounted = (
        answer["accepted"]
        + answer["duplicates"]
        + sum(answer["dropped"].values())
        + answer["suppressed"]
        + len(answer["rejected"])
    )
    assert accounted == 4
    metrics = httpx.get(opt_in.url + "/metrics").text
    assert 'journeykit_events_total{outcome="dropped",reason="no_consent"} 2.0' in metrics
