"""Ids as the files hold them, not as they were typed: an erasure finds every form.

The sink writes U+2028, U+2029 and U+0085 as JSON escapes (one line per event), and
``rejected/`` keeps the event as sent, so an id sent as a number stays a number there.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import httpx
import pytest
from dsr_shop import dsr, event
from helpers import dead_pid, running_collector

from journeykit.collector.recovery import repair_torn_tails
from journeykit.collector.sink import host_tag


@pytest.mark.parametrize("query", ["line\u2028sep", "42"])
def test_an_erasure_removes_every_stored_form_of_the_id(tmp_path: Path, query: str) -> None:
    user: str | int = int(query) if query.isdigit() else query
    batch = [
        event("track", 1, userId=user, event="Viewed", properties={"secret": "STORED"}),
        event("track", 2, userId=user, properties={"secret": "REJECTED"}),  # no event name
        event("track", 3, userId="someone-else", event="Viewed", properties={"n": 42}),
    ]
    with running_collector(tmp_path / "data", consent_regime="opt_out") as running:
        answer = httpx.post(
            f"{running.url}/v1/batch", json={"batch": batch}, headers=running.auth()
        )
        assert (answer.json()["accepted"], len(answer.json()["rejected"])) == (2, 1)
        out = tmp_path / "export.zip"
        exported = dsr(running.data_dir, "export", query, "--out", str(out))
        assert exported.returncode == 0, exported.stderr
        with zipfile.ZipFile(out) as archive:
            held = {n: json.loads(archive.read(n)) for n in ("events.json", "rejected.json")}
        assert [e["messageId"] for e in held["events.json"]] == ["m-1"]
        assert [r["messageId"] for r in held["rejected.json"]] == ["m-2"]
        erased = dsr(running.data_dir, "erase", query, "--yes")
        assert erased.returncode == 0, erased.stderr
        files = [f.read_text() for f in running.data_dir.rglob("*.ndjson")]
        assert not any("STORED" in text or "REJECTED" in text for text in files)
        assert [e["messageId"] for e in running.events] == ["m-3"]


def test_an_erasure_removes_the_subjects_torn_fragments(tmp_path: Path) -> None:
    # A collector killed mid-write: the next start keeps the partial line under torn/.
    data = tmp_path / "data"
    part = data / "events" / "dt=2026-11-02" / "hr=10"
    part.mkdir(parents=True)
    whole = b'{"type":"track","userId":"u-zed","event":"Viewed","messageId":"m1"}\n'
    torn = b'{"type":"track","userId":"u-zed","event":"Viewed","messageId":"m2","prop'
    (part / f"{host_tag()}-{dead_pid()}-1-0001.ndjson").write_bytes(whole + torn)
    kept = repair_torn_tails(data / "events", data / "torn" / "events")
    other = data / "torn" / "events" / "other.torn"
    other.write_bytes(b'{"userId":"u-other","ev\n')
    erased = dsr(data, "erase", "u-zed", "--yes")
    assert erased.returncode == 0, erased.stderr
    assert "torn fragments removed:  1" in erased.stdout
    assert [t.kept_in.read_bytes() for t in kept] == [b""]
    assert other.read_bytes() == b'{"userId":"u-other","ev\n'
