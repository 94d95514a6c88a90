"""An access export (GDPR Art. 15): everything held about one subject, in one zip.

The zip holds JSON files and a manifest::

    events.json            accepted events, oldest file first (a JSON array)
    rejected.json          rejected events with the reasons they were refused
    profile.json           the computed profile (null when none is kept)
    decisions.json         the personalization decision in force (null when none)
    consent_history.json   every consent-ledger record about the subject
    manifest.json          counts, time range, the ids searched (shared device ids named),
                           and the sha256 of each file

Events are streamed from the NDJSON files into the zip, so memory does not grow with the data.
The zip is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from journeykit.collector.dsr._scan import data_files, line_chunks, open_data
from journeykit.collector.dsr.subject import Subject
from journeykit.consent import LedgerRecord

__all__ = ["ExportManifest", "export_subject"]

MANIFEST_VERSION = 1


@dataclass(slots=True)
class _Entry:
    name: str
    count: int = 0
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


@dataclass(slots=True)
class ExportManifest:
    """What an export holds; written into the zip as ``manifest.json``."""

    subject: str
    ids: list[str]
    generated_at: str
    shared: list[str] = field(default_factory=list)
    files: dict[str, dict[str, object]] = field(default_factory=dict)
    first_event_at: str | None = None
    last_event_at: str | None = None

    def count(self, name: str) -> int:
        value = self.files[name]["count"]
        return value if isinstance(value, int) else 0

    def as_json(self) -> dict[str, object]:
        return {
            "manifest_version": MANIFEST_VERSION,
            "subject": self.subject,
            "ids_searched": self.ids,
            "shared_device_ids": self.shared,
            "generated_at": self.generated_at,
            "time_range": {"first": self.first_event_at, "last": self.last_event_at},
            "files": self.files,
        }


class _Writer:
    """One zip member written in pieces, counting and hashing what goes in."""

    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        self.entry = _Entry(name)
        self._stream: IO[bytes] = archive.open(name, "w", force_zip64=True)

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self.entry.digest.update(data)
        self.entry.size += len(data)

    def close(self) -> dict[str, object]:
        self._stream.close()
        return {
            "count": self.entry.count,
            "bytes": self.entry.size,
            "sha256": self.entry.digest.hexdigest(),
        }


def _array(archive: zipfile.ZipFile, name: str, items: Iterable[bytes]) -> dict[str, object]:
    writer = _Writer(archive, name)
    writer.write(b"[")
    for item in items:
        writer.write(b",\n" if writer.entry.count else b"\n")
        writer.write(item)
        writer.entry.count += 1
    writer.write(b"\n]\n")
    return writer.close()


def _single(archive: zipfile.ZipFile, name: str, value: object) -> dict[str, object]:
    writer = _Writer(archive, name)
    writer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
    writer.entry.count = 0 if value is None else 1
    return writer.close()


def _subject_lines(data_dir: Path, subject: Subject, area: str, manifest: ExportManifest) -> Any:
    for file in data_files(data_dir):
        if file.area != area:
            continue
        with open_data(file) as handle:
            for chunk in line_chunks(handle):
                for start, end, event in subject.owned_lines(chunk):
                    when = event.get("timestamp") or event.get("receivedAt")
                    if isinstance(when, str) and area == "events":
                        if manifest.first_event_at is None or when < manifest.first_event_at:
                            manifest.first_event_at = when
                        if manifest.last_event_at is None or when > manifest.last_event_at:
                            manifest.last_event_at = when
                    yield chunk[start:end].rstrip(b"\n")


def _record(record: LedgerRecord) -> dict[str, Any]:
    data = dataclasses.asdict(record)
    del data["line"]
    return data


def export_subject(
    data_dir: Path,
    subject: Subject,
    out: Path,
    *,
    profile: Mapping[str, Any] | None = None,
    decision: Mapping[str, Any] | None = None,
    consent_records: Iterable[LedgerRecord] = (),
    now: datetime | None = None,
) -> ExportManifest:
    """Write the zip for ``subject`` to ``out`` (replacing it atomically); its manifest."""
    manifest = ExportManifest(
        subject=subject.query,
        ids=sorted(subject.ids | subject.pseudonyms),
        shared=sorted(subject.shared),
        generated_at=(now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.partial")
    try:
        # One person's data: readable by the officer's account alone, whatever the umask.
        out_file = os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
        with out_file, zipfile.ZipFile(out_file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            files = manifest.files
            files["events.json"] = _array(
                archive, "events.json", _subject_lines(data_dir, subject, "events", manifest)
            )
            files["rejected.json"] = _array(
                archive, "rejected.json", _subject_lines(data_dir, subject, "rejected", manifest)
            )
            files["profile.json"] = _single(archive, "profile.json", profile)
            files["decisions.json"] = _single(archive, "decisions.json", decision)
            files["consent_history.json"] = _array(
                archive,
                "consent_history.json",
                (orjson.dumps(_record(r)) for r in consent_records),
            )
            archive.writestr(
                "manifest.json", orjson.dumps(manifest.as_json(), option=orjson.OPT_INDENT_2)
            )
        with temp.open("rb") as handle:
            os.fsync(handle.fileno())
        temp.replace(out)
    finally:
        temp.unlink(missing_ok=True)
    return manifest
