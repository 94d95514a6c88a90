"""An erasure and the collector's background gzip of a closed file, each waiting on the other.

Both take an exclusive ``flock`` on the file; the test holds it, lets one of them wait on it,
and does what the other would do meanwhile, then lets go.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from journeykit.collector.compress import gzip_file
from journeykit.collector.dsr.erase import ErasureResult, erase_events
from journeykit.collector.dsr.subject import Subject

ZED = Subject("u-zed", frozenset({"u-zed"}), frozenset())


def _closed_file(data: Path) -> Path:
    part = data / "events" / "dt=2026-11-02" / "hr=10"
    part.mkdir(parents=True)
    path = part / "host-1-1-0001.ndjson"
    users = ["u-zed", "u-other", "u-zed"]
    path.write_text(
        "".join(json.dumps({"userId": u, "messageId": f"m{i}"}) + "\n" for i, u in enumerate(users))
    )
    return path


@contextmanager
def _held(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _waiting(target: object, *args: object) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(target(*args)))  # type: ignore[operator]
    thread.start()
    time.sleep(0.2)  # it has reached the lock (nothing to wait for otherwise)
    assert thread.is_alive()
    return thread, out


def _users(path: Path) -> list[str]:
    body = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [json.loads(line)["userId"] for line in body.splitlines()]


def test_an_erasure_finds_lines_compressed_while_it_waited(tmp_path: Path) -> None:
    path = _closed_file(tmp_path)
    with _held(path):
        eraser, result = _waiting(erase_events, tmp_path, ZED)
        # The compressor, under the lock: the lines go to the .gz, the original away.
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    eraser.join(10)
    [erased] = result
    assert isinstance(erased, ErasureResult)
    assert erased.events_removed == 2
    assert _users(path.with_name(path.name + ".gz")) == ["u-other"]


def test_the_compressor_compresses_what_an_erasure_left(tmp_path: Path) -> None:
    path = _closed_file(tmp_path)
    with _held(path):
        compressor, result = _waiting(gzip_file, path)
        # An erasure, under the lock: a copy without u-zed renamed over the file.
        copy = path.with_name(".copy")
        copy.write_text(json.dumps({"userId": "u-other", "messageId": "m1"}) + "\n")
        copy.replace(path)
    compressor.join(10)
    assert result == [path.with_name(path.name + ".gz")]
    assert not path.exists()
    assert _users(path.with_name(path.name + ".gz")) == ["u-other"]
