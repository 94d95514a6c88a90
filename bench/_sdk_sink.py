"""A minimal collector-like HTTP server for the SDK benchmarks, run in its own process.

``python bench/_sdk_sink.py PORT [--fail-first N] [--record]``: HTTP/1.1 keep-alive on
127.0.0.1, reads each request body and answers ``200 {"ok":true}``, or 500 for the first ``N``
``POST`` requests. With ``--record``, it keeps the ``messageId`` of every event accepted, and
the time and first ``messageId`` of every ``POST`` (which tells retries of one batch apart from
the next batch); ``GET /stats`` answers them as JSON. Nothing else: no auth, no
validation, so the figures measure the client, not a server.

The benchmarks start it with :func:`running` (imported from here: ``bench/`` is their path).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
FAIL = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"


def free_port() -> int:
    """A port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running(port: int, *args: str) -> Iterator[str]:
    """This sink in a child process on ``port`` (with ``args``); yields its URL once it answers."""
    import httpx  # the benchmark's side only: the sink itself needs no HTTP client

    process = subprocess.Popen([sys.executable, str(Path(__file__)), str(port), *args])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(url + "/stats", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield url
    finally:
        process.terminate()
        process.wait(10)


class Sink:
    def __init__(self, fail_first: int, record: bool) -> None:
        self.fail_first = fail_first
        self.record = record
        self.posts: list[tuple[float, str]] = []  # (time.time(), first messageId) per POST
        self.failed = 0
        self.ids: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                gzipped = False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"content-encoding":
                        gzipped = b"gzip" in value
                body = await reader.readexactly(length) if length else b""
                if head.startswith(b"GET /stats"):
                    stats = {"posts": self.posts, "failed": self.failed, "ids": self.ids}
                    payload = orjson.dumps(stats)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload))
                    writer.write(payload)
                else:
                    writer.write(self.post(body, gzipped))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def post(self, body: bytes, gzipped: bool) -> bytes:
        batch = []
        if self.record:
            batch = orjson.loads(gzip.decompress(body) if gzipped else body)["batch"]
            self.posts.append((time.time(), batch[0]["messageId"] if batch else ""))
        if self.failed < self.fail_first:
            self.failed += 1
            return FAIL
        self.ids.extend(event["messageId"] for event in batch)
        return OK


async def serve(port: int, fail_first: int, record: bool) -> None:
    sink = Sink(fail_first, record)
    server = await asyncio.start_server(sink.handle, "127.0.0.1", port, limit=1 << 22)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.fail_first, args.record))


if __name__ == "__main__":
    main()
