"""Removing a subject's events from the NDJSON files by atomic rewrite.

Each file that holds any of the subject's lines is copied without them to a temporary file in
the same directory, which is fsynced and renamed over the original; then the directory is
fsynced. A crash at any moment leaves either the old file or the new one, never a mix; a
leftover temporary file (``.<name>.erasing``) is removed by the next erasure.

Files still being written by a collector are rewritten safely too: the rewrite holds an
exclusive ``flock`` on the file, which the collector's sink also takes around every append, and
the sink notices after its next lock that the path now names a new file and reopens it. So an
event appended while an erasure runs lands either in the copy or in the new file, never in the
unlinked old one. Memory is one chunk (4 MB), whatever the size of the file.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from journeykit.collector._file_lock import lock_current
from journeykit.collector.dsr._scan import DataFile, data_files, line_chunks, open_data
from journeykit.collector.dsr.subject import Subject

__all__ = ["ErasureResult", "erase_events"]

_TEMP_SUFFIX = ".erasing"


@dataclass(slots=True)
class ErasureResult:
    """What an erasure removed from the NDJSON files."""

    events_removed: int = 0
    rejected_removed: int = 0
    torn_removed: int = 0
    files_rewritten: list[str] = field(default_factory=list)
    bytes_scanned: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "events_removed": self.events_removed,
            "rejected_removed": self.rejected_removed,
            "torn_removed": self.torn_removed,
            "files_rewritten": len(self.files_rewritten),
            "bytes_scanned": self.bytes_scanned,
        }


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_leftovers(data_dir: Path) -> list[Path]:
    """Delete temporary files of rewrites that a crash interrupted; their originals are intact."""
    removed = []
    for area in ("events", "rejected", "torn"):
        root = data_dir / area
        if root.is_dir():
            for path in root.rglob(f".*{_TEMP_SUFFIX}"):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


@contextmanager
def _locked(path: Path) -> Iterator[int | None]:
    """``path`` under the exclusive ``flock`` the collector's compressor shares
    (``_file_lock``); ``None`` if it is gone (compressed meanwhile)."""
    fd = lock_current(path)
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


def _contains_subject(file: DataFile, subject: Subject) -> tuple[bool, int]:
    size = 0
    with open_data(file) as handle:
        for chunk in line_chunks(handle):
            size += len(chunk)
            if any(True for _ in subject.owned_lines(chunk)):
                return True, size
    return False, size


def _copy_without(source: BinaryIO, target: BinaryIO, subject: Subject) -> int:
    removed = 0
    for chunk in line_chunks(source):
        kept_from = 0
        for start, end, _ in subject.owned_lines(chunk):
            target.write(chunk[kept_from:start])
            kept_from = end
            removed += 1
        target.write(chunk[kept_from:] if kept_from else chunk)
    return removed


def _rewrite(file: DataFile, subject: Subject) -> int | None:
    """Lines removed from ``file``; ``None`` if it was compressed meanwhile (see ``_locked``)."""
    removed = 0

    def fill(raw: BinaryIO) -> None:
        nonlocal removed
        if file.gzipped:
            with open_data(file) as source, gzip.GzipFile(fileobj=raw, mode="wb") as target:
                removed = _copy_without(source, target, subject)  # type: ignore[arg-type]
        else:
            with open_data(file) as source:
                removed = _copy_without(source, raw, subject)

    with _locked(file.path) as fd:
        if fd is None:
            return None
        _replace(file.path, fill)
    return removed


def _replace(path: Path, fill: Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` by what ``fill`` writes, atomically and durably, keeping its mode.

    Written to a temporary file beside it, fsynced, renamed over it, the directory fsynced: a
    crash leaves the old file or the new one (``remove_leftovers`` deletes the temporary).
    """
    temp = path.with_name(f".{path.name}{_TEMP_SUFFIX}")
    with temp.open("wb") as raw:
        fill(raw)
        raw.flush()
        os.fsync(raw.fileno())
    temp.chmod(path.stat().st_mode & 0o777)
    temp.replace(path)
    _fsync_dir(path.parent)


def _erase_torn(data_dir: Path, subject: Subject, result: ErasureResult) -> None:
    """Remove the subject's partial lines kept under ``torn/`` by the start-up repair.

    A fragment is no JSON to read an identity from: any that holds one of the subject's ids
    or pseudonyms goes (it was kept for inspection only, never as data).
    """
    root = data_dir / "torn"
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*.torn")):
        lines = path.read_bytes().splitlines(keepends=True)
        kept = [line for line in lines if not subject.chunk_may_match(line)]
        if len(kept) == len(lines):
            continue
        _replace(path, lambda raw: raw.write(b"".join(kept)))  # noqa: B023 - called at once
        result.torn_removed += len(lines) - len(kept)
        result.files_rewritten.append(str(path.relative_to(data_dir)))


def erase_events(data_dir: Path, subject: Subject) -> ErasureResult:
    """Remove every line about ``subject`` from accepted and rejected NDJSON under ``data_dir``.

    Files that hold nothing of the subject are only read. Safe while collectors write.
    """
    result = ErasureResult()
    remove_leftovers(data_dir)
    todo = list(data_files(data_dir))
    while todo:
        file = todo.pop(0)
        try:
            found, size = _contains_subject(file, subject)
        except FileNotFoundError:  # compressed since it was listed
            found, size = True, 0
        result.bytes_scanned += size
        if not found:
            continue
        removed = _rewrite(file, subject)
        if removed is None:
            if not file.gzipped:  # compressed meanwhile: its lines are in the .gz now
                todo.insert(0, DataFile(file.area, file.path.with_name(file.path.name + ".gz")))
            continue
        if file.area == "events":
            result.events_removed += removed
        else:
            result.rejected_removed += removed
        result.files_rewritten.append(str(file.path.relative_to(data_dir)))
    _erase_torn(data_dir, subject, result)
    return result
