"""The Flask example shop under gunicorn --preload with 2 workers, against a real collector."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from helpers import PSEUDONYM_KEY, ROOT, WRITE_KEY, free_port, running_collector


def session(url: str, index: int) -> tuple[str, str]:
    """One visitor: accept the banner, view a product. Returns (worker pid, anonymous id)."""
    with httpx.Client(base_url=url, timeout=10) as http:
        http.post("/journeykit/consent", data={"choice": "accept"})
        answer = http.get("/products/tea-01", headers={"Connection": "close"})
        answer.raise_for_status()
        return answer.headers["X-Shop-Worker"], http.cookies["jk_aid"]


def test_preloaded_workers_all_deliver(tmp_path: Path) -> None:
    port = free_port()
    with running_collector(tmp_path / "data", consent_regime="opt_in") as collector:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYKIT_")}
        env.update(
            JOURNEYKIT_WRITE_KEY=WRITE_KEY,
            JOURNEYKIT_PSEUDONYM_KEY=PSEUDONYM_KEY,
            JOURNEYKIT_COLLECTOR_URL=collector.url,
        )
        command = [
            *(sys.executable, "-m", "gunicorn", "--preload", "--workers", "2"),
            *("--config", str(ROOT / "examples" / "flask_shop" / "gunicorn.conf.py")),
            *("--bind", f"127.0.0.1:{port}", "--chdir", str(ROOT / "examples")),
            "flask_shop.app:create_app()",
        ]
        server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url + "/", timeout=1)
                    break
                except httpx.TransportError:
                    assert server.poll() is None, "gunicorn exited"
                    assert time.monotonic() < deadline, "gunicorn did not start"
                    time.sleep(0.1)
            served: dict[str, set[str]] = {}
            with ThreadPoolExecutor(8) as pool:
                for batch in range(10):  # until both workers answered (they almost always do)
                    for pid, anonymous_id in pool.map(session, [url] * 8, range(8)):
                        served.setdefault(pid, set()).add(anonymous_id)
                    if len(served) == 2 or batch == 9:
                        break
            assert len(served) == 2, served
            assert str(server.pid) not in served  # the master forked workers; it serves nothing
            wanted = set().union(*served.values())
            deadline = time.monotonic() + 20
            while True:
                viewed = {
                    e["anonymousId"] for e in collector.events if e.get("event") == "Product Viewed"
                }
                if wanted <= viewed or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            for pid, ids in served.items():
                assert ids <= viewed, f"worker {pid} lost events"
        finally:
            server.send_signal(signal.SIGTERM)
            _, errors = server.communicate(timeout=30)
        assert server.returncode == 0, errors
