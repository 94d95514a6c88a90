"""A one-file HTML report on the ledger for a privacy officer: inline SVG, no scripts, no links.

Everything taken from the ledger is escaped with ``html.escape``. The opt-in rate of a purpose
on a day is the share of that day's decisions about the purpose that granted it (withdrawals
count as denials); it describes the choices people made that day, not the whole population.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from journeykit.consent._ledgerfile import iter_record_dicts
from journeykit.consent.purposes import ALL_PURPOSES
from journeykit.consent.records import LedgerError, LedgerRecord
from journeykit.consent.verify import VerificationReport

__all__ = ["LedgerSummary", "render_report", "summarize", "write_report"]

_COLOURS = ("#1b6ca8", "#c0392b", "#27ae60", "#8e44ad", "#d35400", "#7f8c8d")


@dataclass
class LedgerSummary:
    """Counts gathered in one pass over the ledger."""

    records: int = 0
    subjects: set[str] = field(default_factory=set)
    kinds: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    withdrawals_by_day: Counter[str] = field(default_factory=Counter)
    granted_by_day: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    decided_by_day: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    without_notice: int = 0
    first_at: str | None = None
    last_at: str | None = None

    @property
    def days(self) -> list[str]:
        return sorted(set(self.decided_by_day) | set(self.withdrawals_by_day))


def summarize(ledger: Path | str) -> LedgerSummary:
    """Count what the report shows, streaming the ledger (memory grows with subjects only)."""
    summary = LedgerSummary()
    for number, data in iter_record_dicts(ledger):
        summary.records += 1
        try:
            LedgerRecord.from_json(data, number)
        except LedgerError:
            # A damaged ledger is when a report is wanted most: counted, and verify says where.
            summary.kinds["unreadable"] += 1
            continue
        at = str(data.get("at", ""))
        day = at[:10]
        summary.first_at = min(summary.first_at or at, at)
        summary.last_at = max(summary.last_at or at, at)
        summary.subjects.add(str(data.get("subject")))
        summary.kinds[str(data.get("kind"))] += 1
        if data.get("kind") != "consent":
            continue
        summary.sources[str(data.get("source"))] += 1
        if data.get("withdrawal"):
            summary.withdrawals_by_day[day] += 1
        if not (data.get("notice") or {}).get("version") and not (data.get("notice") or {}).get(
            "hash"
        ):
            summary.without_notice += 1
        for purpose in data.get("granted") or ():
            summary.granted_by_day[day][purpose] += 1
            summary.decided_by_day[day][purpose] += 1
        for purpose in data.get("denied") or ():
            summary.decided_by_day[day][purpose] += 1
    return summary


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _line_chart(days: list[str], series: dict[str, list[float | None]]) -> str:
    width, height, left, bottom, top = 720, 260, 48, 36, 12
    plot_w, plot_h = width - left - 150, height - bottom - top
    step = plot_w / max(len(days) - 1, 1)
    parts = [
        f'<svg role="img" aria-label="Opt-in rate per purpose by day" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for pct in (0, 25, 50, 75, 100):
        y = top + plot_h * (1 - pct / 100)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{pct}%</text>'
        )
    if days:
        base = top + plot_h + 16
        parts.append(f'<text x="{left}" y="{base}" font-size="11">{_e(days[0])}</text>')
        if len(days) > 1:
            parts.append(
                f'<text x="{left + plot_w}" y="{base}" font-size="11" text-anchor="end">'
                f"{_e(days[-1])}</text>"
            )
    for index, (name, values) in enumerate(series.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        points = [
            f"{left + i * step:.1f},{top + plot_h * (1 - v):.1f}"
            for i, v in enumerate(values)
            if v is not None
        ]
        if len(points) == 1:
            cx, cy = points[0].split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>')
        elif points:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                f'points="{" ".join(points)}"/>'
            )
        legend_y = top + 14 + index * 18
        parts.append(
            f'<rect x="{left + plot_w + 16}" y="{legend_y - 10}" width="12" height="12" '
            f'fill="{colour}"/><text x="{left + plot_w + 34}" y="{legend_y}" font-size="12">'
            f"{_e(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _bar_chart(label: str, counts: list[tuple[str, int]]) -> str:
    if not counts:
        return "<p>None recorded.</p>"
    row, width, text_w = 24, 560, 150
    top = max(value for _, value in counts) or 1
    height = row * len(counts) + 8
    parts = [
        f'<svg role="img" aria-label="{_e(label)}" width="{width + text_w + 60}" '
        f'height="{height}" viewBox="0 0 {width + text_w + 60} {height}" '
        ">"
    ]
    for index, (name, value) in enumerate(counts):
        y = 4 + index * row
        bar = max(1.0, width * value / top)
        parts.append(
            f'<text x="{text_w - 8}" y="{y + 15}" font-size="12" text-anchor="end">{_e(name)}'
            f'</text><rect x="{text_w}" y="{y}" width="{bar:.1f}" height="{row - 6}" '
            f'fill="#1b6ca8"/><text x="{text_w + bar + 6:.1f}" y="{y + 15}" font-size="12">'
            f"{value}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _verification_html(report: VerificationReport | None, records: int) -> str:
    if report is None:
        return "<p class=warn>Not verified.</p>"
    status = (
        '<p class="ok">INTACT: every record is in its chain and matches its hash.</p>'
        if report.ok
        else f'<p class="bad">FAILED: {_e(report.first_problem)}</p>'
    )
    signed = (
        f"checked with public key <code>{_e(report.key_id)}</code>"
        if report.key_id
        else "signatures NOT checked (no public key available)"
    )
    share = 100 * report.covered / records if records else 0.0
    rows = [
        ("Records checked", report.records),
        ("Valid signed checkpoints", f"{report.checkpoints} ({signed})"),
        ("Records covered by a signed checkpoint", f"{report.covered} of {records} ({share:.1f}%)"),
        ("Newest record hash", report.last_hash),
    ]
    if len(report.problems) > 1:
        rows.append(("Further problems", "; ".join(str(p) for p in report.problems[1:6])))
    return status + _table(("", ""), rows, header=False)


def _table(
    head: tuple[str, ...], rows: Sequence[tuple[object, ...]], *, header: bool = True
) -> str:
    thead = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{thead}{body}</table>"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse}td,th{padding:.25rem .75rem;border:1px solid #ddd;text-align:left}
.ok{color:#1e7b34;font-weight:bold}.bad{color:#b00020;font-weight:bold}
.warn{color:#9a6700}.note{color:#555;font-size:.9rem}code{font-size:.85rem}"""


def render_report(
    summary: LedgerSummary,
    verification: VerificationReport | None,
    *,
    title: str = "Consent ledger report",
    generated: datetime | None = None,
) -> str:
    """The report as one HTML document."""
    days = summary.days
    series: dict[str, list[float | None]] = {}
    totals: list[tuple[object, ...]] = []
    for purpose in ALL_PURPOSES:
        granted = sum(summary.granted_by_day[d][purpose] for d in days)
        decided = sum(summary.decided_by_day[d][purpose] for d in days)
        if purpose.value != "necessary" or decided:
            rate = f"{100 * granted / decided:.1f}%" if decided else "-"
            totals.append((purpose.value, granted, decided - granted, rate))
        if decided:
            series[purpose.value] = [
                summary.granted_by_day[d][purpose] / summary.decided_by_day[d][purpose]
                if summary.decided_by_day[d][purpose]
                else None
                for d in days
            ]
    when = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    withdrawals = [
        (d, summary.withdrawals_by_day[d]) for d in days if summary.withdrawals_by_day[d]
    ]
    span = f"{summary.first_at} to {summary.last_at}" if summary.first_at else "no records"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{_e(title)}</h1>
<p class="note">Generated {_e(when)}. Period: {_e(span)}.</p>
<h2>Integrity</h2>
{_verification_html(verification, summary.records)}
<h2>Overview</h2>
{
        _table(
            ("", ""),
            [
                ("Records", summary.records),
                ("Distinct subjects (pseudonymous ids)", len(summary.subjects)),
                ("Consent records", summary.kinds.get("consent", 0)),
                ("Erasure receipts", summary.kinds.get("erasure_receipt", 0)),
                ("Withdrawals", sum(summary.withdrawals_by_day.values())),
                ("Consent records without a notice version or hash", summary.without_notice),
            ],
            header=False,
        )
    }
<h2>Opt-in rate per purpose</h2>
{_table(("Purpose", "Granted", "Denied", "Opt-in rate"), totals)}
<p class="note">Opt-in rate on a day: of the choices recorded that day about the purpose, the
share that granted it. Withdrawals count as denials.</p>
{_line_chart(days, series) if days else "<p>No consent decisions recorded.</p>"}
<h2>Changes by source</h2>
{_bar_chart("Consent changes by source", sorted(summary.sources.items()))}
<h2>Withdrawals by day</h2>
{_bar_chart("Withdrawals by day", withdrawals)}
</body></html>
"""


def write_report(
    ledger: Path | str, out: Path | str, verification: VerificationReport | None
) -> LedgerSummary:
    """Summarise ``ledger`` and write the HTML report to ``out``; returns the summary."""
    summary = summarize(ledger)
    Path(out).write_text(render_report(summary, verification), encoding="utf-8")
    return summary
