"""Streaming over the collector's NDJSON files in large, line-aligned chunks.

A data-subject request looks for one person in data that can be gigabytes. Most chunks hold
nothing of theirs, and a substring search over a 4 MB chunk runs at memory speed, so chunks are
searched for the subject's ids as JSON string tokens first and only the rare chunk with a hit is
split into lines and parsed. Memory stays at one chunk whatever the size of the data.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["CHUNK", "DataFile", "data_files", "line_chunks", "open_data"]

CHUNK = 4 * 1024 * 1024

_AREAS = ("events", "rejected")


class DataFile:
    """One NDJSON file of the collector: its area (``events`` or ``rejected``) and path."""

    __slots__ = ("area", "path")

    def __init__(self, area: str, path: Path) -> None:
        self.area = area
        self.path = path

    @property
    def gzipped(self) -> bool:
        return self.path.name.endswith(".gz")

    def __repr__(self) -> str:
        return f"DataFile({self.area!r}, {str(self.path)!r})"


def data_files(data_dir: Path) -> Iterator[DataFile]:
    """Every accepted and rejected NDJSON file under ``data_dir``, plain or gzipped, in order.

    Temporary files of an interrupted rewrite or compression (names starting with ``.``) are
    not data and are skipped.
    """
    for area in _AREAS:
        root = data_dir / area
        if not root.is_dir():
            continue
        found = [*root.rglob("*.ndjson"), *root.rglob("*.ndjson.gz")]
        for path in sorted(found):
            if not path.name.startswith(".") and path.is_file():
                yield DataFile(area, path)


@contextmanager
def open_data(file: DataFile) -> Iterator[BinaryIO]:
    """The file's bytes, decompressed if it is gzipped."""
    if file.gzipped:
        with gzip.open(file.path, "rb") as handle:
            yield handle  # type: ignore[misc]  # GzipFile is a BinaryIO in all but name
    else:
        with file.path.open("rb") as handle:
            yield handle


def line_chunks(handle: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    """The stream in chunks of whole lines (about ``size`` bytes each).

    The last chunk may end without a newline (a torn last line); it is passed on as it is.
    """
    carry = b""
    while True:
        block = handle.read(size)
        if not block:
            if carry:
                yield carry
            return
        block = carry + block
        end = block.rfind(b"\n")
        if end < 0:
            carry = block
            continue
        carry = block[end + 1 :]
        yield block[: end + 1]
