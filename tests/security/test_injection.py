"""Newline, unicode and header injection: one event stays one line, and nothing is echoed.

NDJSON's only separator is ``\\n``, but the files are read by more than NDJSON parsers:
Python's ``str.splitlines()`` (which ``tests/helpers.ndjson_lines`` and many scripts use) also
breaks at ``\\r``, ``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``, ``\\x85``, U+2028 and U+2029,
and JavaScript engines before ES2019 refuse raw U+2028/U+2029 in a string literal. So every
stored line must come out as one line whichever of these readers splits it.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from helpers import RunningCollector, running_collector

from journeykit.consent import verify_ledger
from journeykit.consent.export import select_records
from journeykit.consent.history import iter_records

# Every character some common reader treats as the end of a line, NUL, and friends.
NASTY = 'a\nb\rc\r\nd\x00e\x0bf\x0cg\x1ch\x1di\x1ej\x85k\u2028l\u2029m"n\\o</script>p\U0001f600q'
SEPARATORS = ("\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def lines_of(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), f"{path} ends inside a line"
    return data[:-1].split(b"\n")


def assert_one_record_per_line(root: Path, expected: int) -> list[dict[str, object]]:
    """Every file under ``root``: each line is one JSON object, for every common line splitter."""
    files = sorted(p for p in root.rglob("*.ndjson") if p.is_file())
    assert files, f"nothing written under {root}"
    records: list[dict[str, object]] = []
    for path in files:
        raw_lines = lines_of(path)
        records.extend(json.loads(line) for line in raw_lines)
        text = path.read_text(encoding="utf-8")
        seen, stored = len(text.splitlines()), len(raw_lines)
        raw = ", ".join(map(repr, _raw(text)))
        assert seen == stored, f"{path.name}: {raw} stored unescaped, splitlines() tears lines"
    assert len(records) == expected
    return records


def _raw(text: str) -> list[str]:
    return [s for s in SEPARATORS if s != "\n" and s in text]


def test_stored_events_stay_one_line(tmp_path: Path) -> None:
    with running_collector(tmp_path / "data") as c:
        event = {
            "type": "track",
            "userId": "user" + NASTY,
            "event": "Order" + NASTY,
            "properties": {NASTY: NASTY, "list": [NASTY]},
            "context": {"userAgent": NASTY, "page": {"title": NASTY}},
        }
        answer = httpx.post(c.url + "/v1/batch", json={"batch": [event] * 3}, headers=c.auth())
        assert answer.json()["accepted"] == 3
        records = assert_one_record_per_line(c.data_dir / "events", 3)
    for record in records:
        assert record["event"] == "Order" + NASTY
        assert record["properties"] == {NASTY: NASTY, "list": [NASTY]}


def test_rejected_events_stay_one_line(tmp_path: Path) -> None:
    with running_collector(tmp_path / "data") as c:
        bad = {"type": "track", "userId": NASTY, "properties": {NASTY: NASTY}}  # no "event"
        answer = httpx.post(c.url + "/v1/batch", json={"batch": [bad, bad]}, headers=c.auth())
        assert len(answer.json()["rejected"]) == 2
        records = assert_one_record_per_line(c.data_dir / "rejected", 2)
    assert all(r["event"] == bad for r in records)


def test_consent_ledger_stays_one_record_per_newline(tmp_path: Path) -> None:
    """The ledger keeps U+0085, U+2028 and U+2029 raw, and every reader we ship copes.

    Its lines are canonical JSON under a hash chain (docs/consent-ledger.md): escaping these
    characters would change the canonical form, so ledgers written before would no longer
    verify, and an independent verifier's ``json.dumps(..., ensure_ascii=False)`` would no longer
    give the same bytes. What matters instead is that the ledger is split on ``\n`` only, by
    every reader we ship (the verifier, history, exports, the collector's replay at start), and
    the documentation tells other readers to do the same.
    """
    consent = {"categoryPreferences": {"analytics": True, "marketing": False}}
    with running_collector(tmp_path / "data", consent_regime="opt_in") as c:
        for n in range(2):
            event = {
                "type": "track",
                "userId": f"u{n}" + NASTY,
                "event": "Signed Up",
                "context": {"consent": consent, "userAgent": "agent" + NASTY},
            }
            # The header's bytes are read as latin-1: 0x85 arrives as U+0085 (NEL).
            headers = {**c.auth(), "User-Agent": "agent\x85x".encode("latin-1")}
            answer = httpx.post(c.url + "/v1/batch", json={"batch": [event]}, headers=headers)
            assert answer.status_code == 200, answer.text
        ledger = c.data_dir / "consent" / "ledger.ndjson"
    records = [json.loads(line) for line in lines_of(ledger)]
    assert len(records) >= 2  # one consent record per subject at least
    assert {r["collected_via"]["user_agent"] for r in records} == {"agent" + NASTY}
    assert "\u2028" in ledger.read_text(encoding="utf-8")  # raw, as the canonical form has it
    report = verify_ledger(ledger, thorough=True)
    assert report.ok, report.problems
    assert report.records == len(records)
    assert [r.seq for r in iter_records(ledger)] == [r["seq"] for r in records]
    assert [d["hash"] for d in select_records(ledger)] == [r["hash"] for r in records]
    # The collector's replay at start reads the same records: consent survives a restart.
    with running_collector(tmp_path / "data", consent_regime="opt_in") as c:
        event = {"type": "track", "userId": "u0" + NASTY, "event": "After Restart"}
        answer = httpx.post(c.url + "/v1/batch", json={"batch": [event]}, headers=c.auth())
        assert answer.json()["accepted"] == 1


def test_lone_surrogates_are_stored_as_replacement_characters(collector: RunningCollector) -> None:
    # A lone surrogate cannot be written as UTF-8: read as U+FFFD, as Segment's and
    # RudderStack's servers do (a 400 would make the client drop every event of the batch).
    body = b'{"batch": [{"type": "track", "userId": "u", "event": "E\\ud800"}]}'
    headers = {**collector.auth(), "Content-Type": "application/json"}
    answer = httpx.post(collector.url + "/v1/batch", content=body, headers=headers)
    assert answer.status_code == 200
    assert [e["event"] for e in collector.events] == ["E\ufffd"]
    # Raw bytes that are not UTF-8 at all are still refused whole.
    raw = b'{"batch": [{"type": "track", "userId": "u", "event": "\xff\xfe"}]}'
    answer = httpx.post(collector.url + "/v1/batch", content=raw, headers=headers)
    assert answer.status_code == 400


def test_no_request_value_is_echoed_in_response_headers(collector: RunningCollector) -> None:
    """Header injection: nothing a client sends comes back in a response header."""
    marker = "inj3cted"
    # obs-text bytes and a would-be header split; h11 on our side refuses CR/LF, so the
    # split is also tried through the one value that reaches an error message (the encoding).
    sent: dict[str, str | bytes] = {
        "X-Request-Id": f"{marker}-id",
        "X-Forwarded-For": f"{marker}",
        "Origin": f"https://{marker}.example",
        "User-Agent": f"{marker}\xe9".encode("latin-1"),
        "Content-Encoding": f"{marker}%0d%0aSet-Cookie: a=b",
    }
    bodies = {
        "/v1/batch": b'{"batch": []}',
        "/v1/track": b"not json",
        "/healthz": b"",
    }
    for path, body in bodies.items():
        for auth in (collector.auth(), {"Authorization": f"Basic {marker}"}, {}):
            for content_type in ("application/json", f"text/{marker}"):
                headers: dict[str, str | bytes] = {**sent, **auth, "Content-Type": content_type}
                answer = httpx.post(collector.url + path, content=body, headers=headers)
                for name, value in answer.headers.items():
                    assert marker not in name.lower(), (path, name)
                    assert marker not in value.lower(), (path, name, value)
                assert "set-cookie" not in answer.headers
                assert "access-control-allow-origin" not in answer.headers
