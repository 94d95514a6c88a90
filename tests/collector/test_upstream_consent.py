"""Write keys with ``consent = "upstream"``: sources that checked consent themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import WRITE_KEY, RunningCollector, basic_auth, running_collector
from pydantic import SecretStr

from journeykit.collector.config import ConfigError, load_config
from journeykit.collector.settings import WriteKey
from journeykit.consent.history import iter_records

BACKEND_KEY = "backend-write-key-0123456789"
ADMIN_KEY = "admin-key-0123456789abcdef"


def send(c: RunningCollector, key: str, *events: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        c.url + "/v1/batch", json={"batch": list(events)}, headers=basic_auth(key)
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def track(user: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": "Order Completed", **extra}


def consent(user: str, **purposes: bool) -> dict[str, Any]:
    properties = {"purposes": purposes, "source": "banner", "notice_version": "v1"}
    return track(user, event="Consent Updated", properties=properties)


@pytest.fixture
def two_sources(tmp_path: Path) -> Any:
    keys = (
        WriteKey(key=SecretStr(WRITE_KEY), source="web"),
        WriteKey(key=SecretStr(BACKEND_KEY), source="backend", consent="upstream"),
    )
    with running_collector(
        tmp_path / "data",
        consent_regime="opt_in",
        write_keys=keys,
        admin_key=SecretStr(ADMIN_KEY),
    ) as running:
        yield running


def test_upstream_events_of_subjects_without_consent_flow(two_sources: RunningCollector) -> None:
    web = send(two_sources, WRITE_KEY, track("u1"))
    assert (web["accepted"], web["dropped"]) == (0, {"no_consent": 1})
    backend = send(two_sources, BACKEND_KEY, track("u1", context={"ip": "203.0.113.9"}))
    assert (backend["accepted"], backend["dropped"]) == (1, {})
    (stored,) = two_sources.events
    assert stored["_source"] == "backend"
    assert stored["context"]["ip"] == "203.0.113.0"  # still truncated
    # The subject's consent did not change: the web key still drops their events.
    assert send(two_sources, WRITE_KEY, track("u1"))["dropped"] == {"no_consent": 1}


def test_recorded_denials_still_drop_upstream_events(two_sources: RunningCollector) -> None:
    assert send(two_sources, WRITE_KEY, consent("u2", analytics=False))["accepted"] == 1
    backend = send(two_sources, BACKEND_KEY, track("u2"), track("u3"))
    assert (backend["accepted"], backend["dropped"]) == (1, {"denied:analytics": 1})
    assert [e["userId"] for e in two_sources.events] == ["u2", "u3"]  # the consent event, u3


def test_consent_signals_in_upstream_events_are_recorded(two_sources: RunningCollector) -> None:
    answer = send(two_sources, BACKEND_KEY, consent("u4", analytics=True, marketing=False))
    assert answer["accepted"] == 1  # the consent event itself
    ledger = two_sources.data_dir / "consent" / "ledger.ndjson"
    (record,) = [r for r in iter_records(ledger) if r.kind == "consent"]
    assert (record.granted, record.denied) == (("analytics",), ("marketing",))
    # Marketing is denied on record: the upstream key's events lose their marketing fields.
    send(two_sources, BACKEND_KEY, track("u4", context={"ip": "203.0.113.9"}))
    assert "ip" not in two_sources.events[-1].get("context", {})


def test_the_suppression_list_applies_to_upstream_keys(two_sources: RunningCollector) -> None:
    url = two_sources.url + "/admin/v1/suppressions/u5"
    assert httpx.put(url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 201
    answer = send(two_sources, BACKEND_KEY, track("u5"), track("u6"))
    assert (answer["accepted"], answer["suppressed"]) == (1, 1)


def test_consent_mode_from_toml_and_environment(tmp_path: Path) -> None:
    toml = tmp_path / "collector.toml"
    toml.write_text(
        '[[write_keys]]\nkey = "k-backend"\nsource = "backend"\nconsent = "upstream"\n',
        encoding="utf-8",
    )
    from_file = load_config({}, {}, toml).collector.write_keys
    assert [(k.source, k.consent) for k in from_file] == [("backend", "upstream")]
    env = {
        "JOURNEYKIT_WRITE_KEYS": '[{"key": "k-env", "source": "crm", "consent": "upstream"},'
        ' {"key": "k-web"}]'
    }
    from_env = load_config({}, env).collector.write_keys
    assert [(k.source, k.consent) for k in from_env] == [
        ("crm", "upstream"),
        ("default", "enforce"),
    ]
    plain = load_config({}, {"JOURNEYKIT_WRITE_KEYS": "a, b"}).collector.write_keys
    assert [k.consent for k in plain] == ["enforce", "enforce"]
    with pytest.raises(ConfigError, match="not a JSON array"):
        load_config({}, {"JOURNEYKIT_WRITE_KEYS": "[broken"})
    with pytest.raises(ConfigError, match="consent"):
        load_config({}, {"JOURNEYKIT_WRITE_KEYS": '[{"key": "k", "consent": "trust-me"}]'})
