"""Helpers shared by tests: wire fixtures, NDJSON reading and a real collector server.

On ``sys.path`` through pytest's ``pythonpath`` setting, so tests ``import helpers``.
"""

from __future__ import annotations

import base64
import gzip
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
WIRE = ROOT / "tests" / "fixtures" / "wire"
WRITE_KEY = "test-write-key-0123456789"
PSEUDONYM_KEY = "test-pseudonym-key-0123456789abcdef"
# Protocol tests run under opt_out, as a Segment client that sends no consent would; the
# consent tests choose opt_in explicitly.
SERVER_DEFAULTS: dict[str, Any] = {"consent_regime": "opt_out"}
SERVER_ENV = {"JOURNEYKIT_CONSENT_REGIME": "opt_out", "JOURNEYKIT_PSEUDONYM_KEY": PSEUDONYM_KEY}


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def basic_auth(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def ndjson_lines(root: Path) -> list[dict[str, Any]]:
    """Every record of every NDJSON file under ``root``, in file-name order."""
    out: list[dict[str, Any]] = []
    for path in sorted(root.rglob("*.ndjson")):
        out.extend(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    return out


@dataclass
class RunningCollector:
    url: str
    data_dir: Path
    key: str
    app: Any = None  # the Starlette app the server runs, for tests that walk its routes

    @property
    def events(self) -> list[dict[str, Any]]:
        return ndjson_lines(self.data_dir / "events")

    @property
    def rejected(self) -> list[dict[str, Any]]:
        return ndjson_lines(self.data_dir / "rejected")

    def auth(self) -> dict[str, str]:
        return basic_auth(self.key)


def in_forked_child(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a forked child and return what it returned (JSON through a pipe).

    The child leaves with ``os._exit``, as ``multiprocessing`` children do: no teardown, no
    exit hooks; a failure in it fails the test here.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_fd)
            os.write(write_fd, json.dumps(body()).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        raw = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked child failed"
    return json.loads(raw)


def dead_pid() -> int:
    """The pid of a process that has ended (a crashed writer's, for the recovery tests)."""
    process = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(process.stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_collector(data_dir: Path, **settings: Any) -> Iterator[RunningCollector]:
    """A real collector under uvicorn on 127.0.0.1, in a thread, writing under ``data_dir``."""
    import uvicorn
    from pydantic import SecretStr

    from journeykit.collector.app import create_app
    from journeykit.collector.settings import CollectorSettings

    options = {**SERVER_DEFAULTS, "pseudonym_key": SecretStr(PSEUDONYM_KEY), **settings}
    options.setdefault("write_keys", (SecretStr(WRITE_KEY),))  # callers may pass their own
    config = CollectorSettings(data_dir=data_dir, **options)
    app = create_app(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", proxy_headers=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    try:
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the collector did not start")
            time.sleep(0.01)
        yield RunningCollector(f"http://127.0.0.1:{port}", data_dir, WRITE_KEY, app)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def serve(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    command = [
        *(sys.executable, "-m", "journeykit.collector", "collector", "serve"),
        *("--port", str(port), "--data-dir", str(data_dir), "--log-level", "warning"),
        *args,
    ]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYKIT_")}
    environment.update(SERVER_ENV)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**environment, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"collector did not start: {process.communicate()[0]}")
            time.sleep(0.05)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(15)
        if process.stdout:
            process.stdout.close()


class Recorder:
    """A fake collector: answers from a script of responses and keeps every request body."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.script = list(responses)
        self.requests: list[httpx.Request] = []
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            content = request.content
            if request.headers.get("content-encoding") == "gzip":
                content = gzip.decompress(content)
            self.bodies.append(json.loads(content))
            step = self.script.pop(0) if self.script else httpx.Response(200, json={"ok": True})
        if isinstance(step, Exception):
            raise step
        return step

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for body in self.bodies for e in body["batch"]]


def load_beside(anchor: str, name: str) -> ModuleType:
    """Import ``<name>.py`` from the folder of ``anchor`` (a conftest's ``__file__``) as ``name``.

    tests/ is shared by every area, so a folder's own support code lives beside its tests and is
    registered under a name of its own; with importlib mode a plain import would not find it.
    """
    path = Path(anchor).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class RedisProcess:
    """A redis-server of our own on a fixed 127.0.0.1 port; its dump file under ``workdir``."""

    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (loading the dump a ``stop(save=True)`` left) and wait until it listens."""
        self.process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait(15)
                raise RuntimeError("redis-server did not answer PING within 10 s")
            time.sleep(0.05)

    def stop(self, *, save: bool = False) -> None:
        """Shut it down; ``save=True`` writes its data first, as a persistent Redis keeps it."""
        if self.process is None or self.process.poll() is not None:
            return
        if save:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(b"SHUTDOWN SAVE\r\n")
                sock.recv(64)  # the connection closes once the dump is written
            self.process.wait(15)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(15)
