"""SIGKILL an app mid-stream while the collector is down; a restarted app delivers the rest.

"Durable" is defined as in docs/sdk.md: an event is durable once a ``flush()`` that started
after it was tracked has returned ``True`` (it was delivered, or its spool record was renamed
into place and the directory fsynced). The app prints each chunk's ids only after that.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import WRITE_KEY, free_port, running_collector

from journeykit.sdk._spool import decode_record

APP = """
import json, sys, time
from pathlib import Path
from journeykit.sdk import Client

url, spool, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
client = Client(
    sys.argv[4], host=url, spool_dir=spool, consent_regime="opt_out", pseudonymize=False,
    max_retries=1, max_backoff=0.05, spool_after=0.1, flush_interval=0.01, batch_size=20,
)
if mode == "track":
    i = 0
    while True:
        ids = [client.track("u1", "Tick", {"i": i + k}).message_id for k in range(20)]
        i += 20
        if client.flush(timeout=30):
            print(json.dumps(ids), flush=True)
else:
    deadline = time.monotonic() + 60
    while list(spool.glob("*.jks")) and time.monotonic() < deadline:
        time.sleep(0.05)
    client.shutdown(timeout=10)
    stats = client.stats()
    print(json.dumps({"replayed": stats.replayed, "dropped": dict(stats.dropped)}), flush=True)
"""


def _app(url: str, spool: Path, mode: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYKIT_")}
    return subprocess.Popen(
        [sys.executable, "-c", APP, url, str(spool), mode, WRITE_KEY],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_events_reported_durable_survive_sigkill_and_arrive_once_after_restart(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    nobody = f"http://127.0.0.1:{free_port()}"  # the collector is down: connection refused
    app = _app(nobody, spool, "track")
    durable: list[str] = []
    try:
        assert app.stdout is not None
        while len(durable) < 200:
            line = app.stdout.readline()
            assert line, "the app ended before reporting 200 durable events"
            durable += json.loads(line)
        time.sleep(0.05)  # let it go on tracking and spooling, then kill it mid-stream
        app.send_signal(signal.SIGKILL)
        app.wait(10)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
        if app.stdout is not None:
            app.stdout.close()
    assert app.returncode == -signal.SIGKILL

    # No torn record: every record decodes (its length and CRC check), and every durable id is
    # in one. A torn write can only be a .tmp- file, which is never read.
    records = sorted(spool.glob("*.jks"))
    others = {p.name for p in spool.iterdir()} - {p.name for p in records} - {"corrupt"}
    assert all(name.startswith(".tmp-") and name.endswith(".tmp") for name in others)
    on_disk = [mid for path in records for mid, _ in decode_record(path.read_bytes())]
    assert set(durable) <= set(on_disk)
    # A replayer killed after delivering a record but before deleting it sends it twice:
    # simulate that with a copy; the collector's dedup makes the resend harmless.
    shutil.copy(records[0], spool / ("99999999999999999999-0000001-000000.jks"))
    copied = len(decode_record(records[0].read_bytes()))

    with running_collector(tmp_path / "data") as collector:
        restarted = _app(collector.url, spool, "replay")
        out, _ = restarted.communicate(timeout=120)
        assert restarted.returncode == 0, out
        report = json.loads(out.splitlines()[-1])
        stored = [event["messageId"] for event in collector.events]
    assert report["dropped"] == {}
    assert report["replayed"] == len(on_disk) + copied
    assert set(durable) <= set(stored)
    assert Counter(stored).most_common(1)[0][1] == 1  # dedup: nothing stored twice
    assert list(spool.glob("*.jks")) == []
