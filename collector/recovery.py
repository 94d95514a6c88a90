"""What a collector does at start: repair crash damage and remember recent messageIds.

A collector killed mid-write can leave a partial last line. At start it is cut off, kept in
``<data-dir>/torn/`` for inspection, and reported, so that readers of the NDJSON never meet a
broken line and nothing is silently thrown away. Files of writers that are still running on
this host are left alone: their last line may simply still be arriving.

Compressed files (``.ndjson.gz``) are complete by construction (see ``compress``), so only
plain ones are repaired; both are read for the dedup rebuild. The messageIds stored within
the dedup window are read back, so a batch that was written but
whose answer was lost in the crash is recognised when the client sends it again.
"""

from __future__ import annotations

import gzip
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from journeykit.collector.compress import writer_alive
from journeykit.collector.sink import host_tag

__all__ = ["TornTail", "closed_files", "recent_message_ids", "repair_torn_tails"]

log = logging.getLogger("journeykit.collector")

_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class TornTail:
    """A partial last line cut off a file at start, and where its bytes were kept."""

    path: Path
    bytes_cut: int
    kept_in: Path


def _writer_alive(path: Path, host: str) -> bool:
    parts = path.stem.split("-")
    # <host>-<pid>-<start>-<seq>; the host part may itself contain dashes.
    if len(parts) < 4 or not parts[-3].isdigit():
        return False
    if "-".join(parts[:-3]) != host:
        return True  # another host's file: not ours to judge
    opened = int(parts[-2]) if parts[-2].isdigit() else 0
    return writer_alive(int(parts[-3]), opened)


def _last_newline(handle: BinaryIO, size: int) -> int:
    """Offset just past the last newline of a binary file, 0 if it has none."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        handle.seek(start)
        chunk = handle.read(end - start)
        index = chunk.rfind(b"\n")
        if index >= 0:
            return start + index + 1
        end = start
    return 0


def repair_torn_tails(root: Path, keep_dir: Path) -> list[TornTail]:
    """Cut partial last lines off NDJSON files under ``root`` whose writer is gone."""
    repaired: list[TornTail] = []
    if not root.is_dir():
        return repaired
    host = host_tag()
    for path in sorted(root.rglob("*.ndjson")):
        try:
            size = path.stat().st_size
            if size == 0 or _writer_alive(path, host):
                continue
            handle = path.open("rb+")
        except FileNotFoundError:
            continue  # compressed meanwhile (by another worker): a closed file, nothing torn
        with handle:
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                continue
            keep = _last_newline(handle, size)
            handle.seek(keep)
            tail = handle.read()
            kept_in = keep_dir / path.relative_to(root).with_suffix(".torn")
            kept_in.parent.mkdir(parents=True, exist_ok=True)
            with kept_in.open("ab") as side:
                side.write(tail + b"\n")
                side.flush()
                os.fsync(side.fileno())
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
        log.warning(
            "journeykit collector: cut a torn last line (%d bytes) off %s; kept in %s",
            len(tail),
            path,
            kept_in,
        )
        repaired.append(TornTail(path, len(tail), kept_in))
    return repaired


def _lines(path: Path) -> Iterator[bytes]:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as packed:
            yield from packed
        return
    with path.open("rb") as handle:
        yield from handle


def _mtime(plain: Path) -> float | None:
    """The modification time of ``plain`` or of its ``.gz``; ``None`` if neither is there."""
    for path in (plain, plain.with_name(plain.name + ".gz")):
        try:
            return path.stat().st_mtime
        except FileNotFoundError:
            continue
    return None


def _either_lines(plain: Path) -> Iterator[bytes]:
    """The lines of ``plain``, or of its ``.gz`` if it was compressed before it was opened."""
    try:
        handle = plain.open("rb")
    except FileNotFoundError:
        yield from _lines(plain.with_name(plain.name + ".gz"))
        return
    with handle:  # an open file stays readable when the compressor deletes its name
        yield from handle


def closed_files(root: Path) -> list[Path]:
    """NDJSON files under ``root`` whose writer on this host is gone: safe to compress."""
    if not root.is_dir():
        return []
    host = host_tag()
    return [p for p in sorted(root.rglob("*.ndjson")) if not _writer_alive(p, host)]


def recent_message_ids(root: Path, window: float, max_entries: int) -> list[str]:
    """messageIds stored in files written within ``window`` seconds, oldest first.

    Reads the newest files first and stops at ``max_entries``, so start-up cost is bounded by
    the dedup memory bound, not by how much data the directory holds.
    """
    if window <= 0 or not root.is_dir():
        return []
    horizon = time.time() - window
    # A closed file may be compressed (X.ndjson -> X.ndjson.gz, the original then deleted) by
    # this process's compressor or another worker's while this runs: each file is known by
    # its plain name and read in whichever form it has when its turn comes.
    names = {p.with_name(p.name.removesuffix(".gz")) for p in root.rglob("*.ndjson*")}
    names = {p for p in names if p.name.endswith(".ndjson")}
    files = [(mtime, p) for p in names if (mtime := _mtime(p)) is not None]
    recent = sorted((item for item in files if item[0] >= horizon), reverse=True)
    newest_first: list[list[str]] = []
    count = 0
    for _, path in recent:
        ids: list[str] = []
        try:
            for line in _either_lines(path):
                try:
                    mid = orjson.loads(line).get("messageId")
                except (orjson.JSONDecodeError, AttributeError):
                    continue  # a torn or foreign line; the repair above reports those
                if isinstance(mid, str):
                    ids.append(mid)
        except (OSError, EOFError) as exc:  # a .gz damaged outside the collector
            log.error("journeykit collector: cannot read %s for dedup: %s", path, exc)
        newest_first.append(ids)
        count += len(ids)
        if count >= max_entries:
            break
    out = [mid for ids in reversed(newest_first) for mid in ids]
    return out[-max_entries:]
