"""A client that sends its headers and then trickles the body is cut off, not waited for.

uvicorn has no timeout for reading a request body (its ``timeout_keep_alive`` only covers idle
connections between requests), so without one in the collector a few hundred such clients hold
every connection and worker thread. The collector must answer 408 or close the connection once
the body has taken longer than its request timeout (``request_timeout_seconds``, set here
through the environment to 2 s); the test gives it five times that.
"""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from helpers import WRITE_KEY, basic_auth, serve

TIMEOUT_SECONDS = 2
GIVE_UP_AFTER = 5 * TIMEOUT_SECONDS


def test_a_trickling_body_is_cut_off(tmp_path: Path) -> None:
    env = {"JOURNEYKIT_REQUEST_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS)}
    with serve(tmp_path / "data", "--write-key", WRITE_KEY, env=env) as (url, _process):
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        auth = basic_auth(WRITE_KEY)["Authorization"]
        head = (
            "POST /v1/batch HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            f"Authorization: {auth}\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n"
        ).encode()
        with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
            sock.sendall(head + b'{"batch": [')
            started = time.monotonic()
            answer = None
            while time.monotonic() - started < GIVE_UP_AFTER:
                readable, _, _ = select.select([sock], [], [], 0.25)
                if readable:
                    answer = sock.recv(4096)
                    break
                try:
                    sock.sendall(b" ")  # one byte every quarter second
                except OSError:  # reset by the server: cut off, as it should be
                    answer = b""
                    break
        assert answer is not None, (
            f"the server kept a client that trickled its body for {GIVE_UP_AFTER} s; "
            "no request timeout applies"
        )
        if answer:  # an answer rather than a bare close: it must be a 408
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
