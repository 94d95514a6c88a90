"""Collector and Redis processes that the fault-injection tests can kill and start again.

``helpers.serve`` picks a new port each start; these tests need to SIGKILL a collector and
start it again **on the same port and data dir** (the SDK's host is fixed), and to stop and
restart a redis-server on its port (``helpers.RedisProcess``). ``conftest.py`` makes them as
fixtures and stops every one
when the test ends. Loaded by ``conftest.py`` (``helpers.load_beside``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from helpers import SERVER_ENV, WRITE_KEY, free_port


def _stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(15)


@dataclass
class CollectorProcess:
    """``journeykit collector serve`` on a fixed 127.0.0.1 port and data dir."""

    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        """Start it and wait (bounded) until ``/healthz`` answers."""
        command = [
            *(sys.executable, "-m", "journeykit.collector", "collector", "serve"),
            *("--port", str(self.port), "--data-dir", str(self.data_dir)),
            *("--log-level", "warning", "--write-key", WRITE_KEY),
        ]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYKIT_")}
        # Output goes to a file, not a pipe nobody reads: a full pipe would stall the server.
        log = (self.data_dir.parent / f"collector-{self.port}.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**environment, **SERVER_ENV, **self.env},
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                _stop(self.process, signal.SIGKILL)
                raise RuntimeError(f"the collector did not start: {self.log()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, open files are left as they are."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(15)

    def stop(self) -> None:
        _stop(self.process)

    def log(self) -> str:
        path = self.data_dir.parent / f"collector-{self.port}.log"
        return path.read_text(errors="replace") if path.exists() else ""
