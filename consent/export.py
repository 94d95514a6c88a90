"""Exports of the ledger as CSV, a JSON array or NDJSON, streamed in constant memory.

Filters: ``start`` (inclusive) and ``end`` (exclusive) on the time of the choice, and
``purpose`` (records that grant or deny it). CSV cells that a spreadsheet would run as a
formula (starting with ``= + - @``, tab or carriage return) get a leading apostrophe, because
user agents and methods come from outside.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from journeykit.consent._canonical import format_time
from journeykit.consent._ledgerfile import iter_record_dicts
from journeykit.consent.purposes import Purpose, parse_purpose
from journeykit.consent.records import LedgerError, LedgerRecord

__all__ = ["CSV_COLUMNS", "ExportFormat", "export_ledger", "select_records"]

ExportFormat = Literal["csv", "json", "ndjson"]

CSV_COLUMNS = (
    "seq", "kind", "at", "subject", "linked_ids", "granted", "denied", "withdrawal", "source",
    "method", "notice_version", "notice_hash", "ip", "user_agent", "reference", "prev_hash",
    "hash",
)  # fmt: skip
"""CSV header; list fields are joined with a space."""

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def select_records(
    ledger: Path | str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    purpose: Purpose | str | None = None,
) -> Iterator[dict[str, Any]]:
    """The parsed records that pass the filters, in ledger order.

    Bad filters (UnknownPurpose) and a missing or torn ledger (LedgerError) raise at the call,
    not at the first record.
    """
    low = format_time(start) if start else None
    high = format_time(end) if end else None
    wanted = parse_purpose(purpose).value if purpose is not None else None
    return _filtered(iter_record_dicts(ledger), low, high, wanted)


def _filtered(
    records: Iterator[tuple[int, dict[str, Any]]],
    low: str | None,
    high: str | None,
    wanted: str | None,
) -> Iterator[dict[str, Any]]:
    for number, data in records:
        LedgerRecord.from_json(data, number)  # a record in shape, or LedgerError naming its line
        at = data.get("at", "")
        if (low and at < low) or (high and at >= high):
            continue
        if wanted and wanted not in data["granted"] and wanted not in data["denied"]:
            continue
        yield data


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_row(data: dict[str, Any]) -> list[str]:
    notice = data.get("notice") or {}
    via = data.get("collected_via") or {}
    flat = {
        **data,
        "notice_version": notice.get("version"),
        "notice_hash": notice.get("hash"),
        "ip": via.get("ip"),
        "user_agent": via.get("user_agent"),
    }
    return [_cell(flat.get(column)) for column in CSV_COLUMNS]


def export_ledger(
    ledger: Path | str,
    out: IO[str],
    fmt: ExportFormat,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    purpose: Purpose | str | None = None,
) -> int:
    """Write the selected records to ``out`` in ``fmt``; returns how many were written.

    ``json`` is one JSON array written element by element (one record per line inside it);
    ``ndjson`` is one record per line. Records are written exactly as stored, hashes included.
    """
    records = select_records(ledger, start=start, end=end, purpose=purpose)
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for count, data in enumerate(records, start=1):  # noqa: B007 -- count is returned
            writer.writerow(_csv_row(data))
    elif fmt == "json":
        out.write("[")
        for count, data in enumerate(records, start=1):
            out.write(("\n" if count == 1 else ",\n") + orjson.dumps(data).decode())
        out.write("\n]\n" if count else "]\n")
    elif fmt == "ndjson":
        for count, data in enumerate(records, start=1):  # noqa: B007 -- count is returned
            out.write(orjson.dumps(data).decode() + "\n")
    else:
        raise LedgerError(f"unknown export format {fmt!r}; use csv, json or ndjson")
    return count
