"""Low-level reading of the ledger file: its last line, a torn tail, streaming records.

Shared by the writer, the readers and repair. A reader takes a shared ``flock`` only to note
the file's size: writers append whole batches under the exclusive lock, so that size is a line
boundary and later appends are simply not read.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from journeykit.consent.records import LedgerError, TornLedgerError

__all__ = ["count_lines", "iter_record_dicts", "last_line", "torn_tail", "write_all"]


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def count_lines(fd: int, end: int) -> int:
    count, offset = 0, 0
    while offset < end:
        chunk = os.pread(fd, min(1 << 20, end - offset), offset)
        count += chunk.count(b"\n")
        offset += len(chunk)
    return count


def last_line(fd: int, size: int) -> tuple[int, bytes]:
    """The offset and bytes of the last complete line of a file ending with a newline."""
    end = size - 1  # the final newline
    block = 4096
    while True:
        start = max(0, end - block)
        chunk = os.pread(fd, end - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1, chunk[cut + 1 :]
        if start == 0:
            return 0, chunk
        block *= 4


def torn_tail(fd: int, size: int) -> tuple[int, int] | None:
    """(offset, length) of an unterminated last line, or None when the file ends cleanly."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return None
    # An unterminated last line is a complete-file case of _last_line on size + 1.
    offset, _ = last_line(fd, size + 1)
    return offset, size - offset


def iter_record_dicts(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, parsed record) for each line of the ledger, streamed.

    Raises LedgerError at once (before anything is yielded, so an export never ends half-way
    for it) when the ledger is missing or its last line is torn; while iterating, when a line
    is not JSON.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise LedgerError(f"no consent ledger at {path}") from None
    except OSError as exc:
        raise LedgerError(f"cannot read {path}: {exc.strerror}") from None
    fd = handle.fileno()
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            # A snapshot: whole batches are appended under LOCK_EX, so this is a line boundary.
            size = os.fstat(fd).st_size
            torn = torn_tail(fd, size)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        if torn:
            raise TornLedgerError(path, count_lines(fd, torn[0]) + 1, torn[1])
    except BaseException:
        handle.close()
        raise
    return _parsed_lines(path, handle, size)


def _parsed_lines(path: Path, handle: BinaryIO, size: int) -> Iterator[tuple[int, dict[str, Any]]]:
    with handle:
        remaining = size
        for number, line in enumerate(handle, start=1):
            remaining -= len(line)
            if remaining < 0:
                break  # appended after the snapshot
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            if not isinstance(record, dict):  # a damaged line: `verify` says where and how
                raise LedgerError(f"{path}: line {number} is not a JSON record")
            yield number, record
