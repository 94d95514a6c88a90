"""The README's first command, as a newcomer runs it (minus the virtualenv)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, free_port, ndjson_lines


def test_demo_prints_the_summary_and_leaves_no_server(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--users", "20", "--port", str(port)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "journeykit demo summary" in result.stdout
    assert "collector              stopped" in result.stdout
    stored = ndjson_lines(tmp_path / "data" / "events")
    assert f"stored by collector    {len(stored)} " in result.stdout
    assert len(stored) > 20
    # Decisions for the simulated people: most granted personalization, some did not.
    decided = re.search(r"decisions +(\d+) personalized, \{'not_consented': (\d+)\}", result.stdout)
    assert decided is not None, result.stdout
    assert int(decided[1]) + int(decided[2]) == 20
    assert int(decided[1]) > 0
    assert "next: " in result.stdout
    with socket.socket() as sock:  # the port is free again: no server left running
        # SO_REUSEADDR: connections the server closed linger in TIME_WAIT, which is not a
        # server; a socket still listening on the port would make this bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_second_run_reuses_the_key_and_appends(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "examples" / "demo.py"), "--users", "5"]
    first = subprocess.run(
        [*command, "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    second = subprocess.run(
        [*command, "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == second.returncode == 0, second.stdout + second.stderr
    assert "(reused)" in second.stdout
