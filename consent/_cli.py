"""``journeykit consent ...``: the privacy officer's commands over the consent ledger.

Only argparse at import; the ledger modules are imported when a command runs. Every error a
user can cause ends as one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from journeykit.consent.history import Resolver
    from journeykit.consent.records import LedgerRecord

__all__ = ["add_commands", "run"]

_PSEUDONYM_ENV = ("JOURNEYKIT_PSEUDONYM_KEY", "JOURNEYKIT_PSEUDONYM_KEY_FILE")


def add_commands(subparsers: Any) -> None:
    """Register the ``consent`` command and its subcommands on ``subparsers``."""
    consent = subparsers.add_parser("consent", help="verify and query the consent ledger")
    actions = consent.add_subparsers(dest="action", required=True, metavar="ACTION")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=text, description=text)
        parser.add_argument(
            "--data-dir", type=Path, default=Path("data"), help="data directory (default: data)"
        )
        return parser

    verify = command("verify", "check that no record was altered, removed, added or reordered")
    verify.add_argument(
        "--public-key",
        type=Path,
        action="append",
        metavar="FILE",
        help="the auditor's copy of the public key (PEM or raw 32 bytes); again for each key "
        "the ledger was signed with (after a key change)",
    )
    verify.add_argument(
        "--expect-covered",
        type=int,
        metavar="SEQ",
        help="the seq signed checkpoints covered at your last audit: fail if they reach less now",
    )
    verify.add_argument(
        "--thorough",
        action="store_true",
        help="also check every record's schema and canonical form (slower)",
    )

    history = command("history", "every consent record about one subject")
    history.add_argument("subject", metavar="SUBJECT", help="pseudonymous id, raw id or email")
    history.add_argument("--json", action="store_true", help="one JSON record per line")

    state = command("state", "the consent of one subject in force at a moment")
    state.add_argument("subject", metavar="SUBJECT", help="pseudonymous id, raw id or email")
    state.add_argument(
        "--at",
        required=True,
        metavar="TIME",
        help="ISO 8601 time, e.g. 2024-05-01T12:00:00Z (no zone means UTC)",
    )
    state.add_argument("--json", action="store_true", help="print JSON")

    export = command("export", "write records as CSV, a JSON array or NDJSON")
    export.add_argument(
        "--format",
        choices=["csv", "json", "ndjson"],
        default="csv",
        help="csv (default), json (one streamed array) or ndjson",
    )
    export.add_argument("--from", dest="start", metavar="TIME", help="from this time (inclusive)")
    export.add_argument("--to", dest="end", metavar="TIME", help="up to this time (exclusive)")
    export.add_argument("--purpose", help="only records that grant or deny this purpose")
    export.add_argument("--out", type=Path, metavar="FILE", help="write here (default: stdout)")

    report = command("report", "write a self-contained HTML report with charts")
    report.add_argument(
        "--out",
        type=Path,
        default=Path("consent-report.html"),
        metavar="FILE",
        help="the HTML file to write (default: consent-report.html)",
    )
    report.add_argument(
        "--public-key",
        type=Path,
        action="append",
        metavar="FILE",
        help="verify checkpoints with this public key; again for each key the ledger used",
    )

    public_key = command("public-key", "print the checkpoint-signing public key (PEM)")
    public_key.add_argument("--out", type=Path, metavar="FILE", help="write here (default: stdout)")

    command("repair", "move an incomplete last line (left by a crash) to a side file")


def _say(text: str = "", *, err: bool = False) -> None:
    (sys.stderr if err else sys.stdout).write(text + "\n")


def run(args: argparse.Namespace) -> int:
    """Run the ``consent`` subcommand in ``args``; returns the exit status."""
    from journeykit.consent.errors import ConsentError

    handlers = {
        "verify": _verify,
        "history": _history,
        "state": _state,
        "export": _export,
        "report": _report,
        "public-key": _public_key,
        "repair": _repair,
    }
    try:
        return handlers[args.action](args)
    except ConsentError as exc:  # LedgerError, UnknownPurpose, bad keys: all worded for people
        _say(f"journeykit consent {args.action}: {exc}", err=True)
        return 1
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as other Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:
        _say(f"journeykit consent {args.action}: {exc.strerror}: {exc.filename}", err=True)
        return 1


def _time(text: str, flag: str) -> Any:
    from journeykit.consent._canonical import parse_time
    from journeykit.consent.records import LedgerError

    try:
        return parse_time(text)
    except ValueError as exc:
        raise LedgerError(f"{flag}: {exc}") from None


def _verify(args: argparse.Namespace) -> int:
    report, origin = _verification(args)
    ledger = _paths(args).ledger
    if report.ok:
        _say(f"OK: {ledger} is intact: {report.records} records, chain unbroken.")
    else:
        _say(f"FAILED: {ledger}")
        for problem in report.problems:
            _say(f"  {problem}")
    if report.key_id:
        _say(f"Checkpoints: {report.checkpoints} valid, signed by {report.key_id} ({origin}).")
    else:
        _say(f"Checkpoints: signatures NOT checked ({origin}).")
    if report.ok:
        _say(f"Covered by a signed checkpoint: {report.covered} of {report.records} records.")
    else:
        _say(f"Records intact before the first problem: {report.records}.")
    return 0 if report.ok else 1


def _paths(args: argparse.Namespace) -> Any:
    from journeykit.consent._paths import LedgerPaths

    return LedgerPaths.under(args.data_dir)


def _verification(args: argparse.Namespace) -> tuple[Any, str]:
    from journeykit.consent.checkpoints import LedgerPublicKey, LedgerSigner
    from journeykit.consent.verify import verify_ledger

    paths = _paths(args)
    key: Any
    if args.public_key:
        key = [LedgerPublicKey.from_file(path) for path in args.public_key]
        origin = "key from " + ", ".join(str(path) for path in args.public_key)
    elif (signer := LedgerSigner.configured(args.data_dir)) is not None:
        key = signer.public_key
        origin = "DEMO key beside the ledger" if signer.demo else f"key from {signer.origin}"
        origin += "; for independent proof pass --public-key with the auditor's copy"
    else:
        key, origin = None, "no public key: pass --public-key FILE"
    thorough = bool(getattr(args, "thorough", False))
    report = verify_ledger(
        paths.ledger,
        paths.checkpoints,
        public_key=key,
        thorough=thorough,
        expect_covered=getattr(args, "expect_covered", None),
    )
    return report, origin


def _resolver() -> tuple[Resolver | None, str]:
    """Pseudonyms of a raw id or email, when a pseudonymization key is configured."""
    if not any(os.environ.get(name) for name in _PSEUDONYM_ENV):
        return None, "matching SUBJECT exactly (no JOURNEYKIT_PSEUDONYM_KEY set)"
    from journeykit.consent.pseudonymize import FieldKind, Pseudonymizer

    pseudonymizer = Pseudonymizer.from_env()

    def resolve(subject: str) -> Iterable[str]:
        kinds = [FieldKind.ID] + ([FieldKind.EMAIL] if "@" in subject else [])
        found: list[str] = []
        for kind in kinds:
            try:
                found.extend(pseudonymizer.candidates(subject, kind))
            except ValueError:
                continue  # not normalisable as this kind; the other kinds may still match
        return found

    return resolve, f"matching SUBJECT and its pseudonyms under keys {pseudonymizer.key_ids}"


def _describe(record: LedgerRecord) -> str:
    parts = [f"seq {record.seq}", record.at, record.kind, f"{record.source}"]
    if record.method:
        parts[-1] += f"/{record.method}"
    if record.granted:
        parts.append("granted: " + ", ".join(record.granted))
    if record.denied:
        parts.append(("WITHDREW: " if record.withdrawal else "denied: ") + ", ".join(record.denied))
    if record.notice_version or record.notice_hash:
        parts.append(f"notice {record.notice_version or record.notice_hash}")
    if record.reference:
        parts.append(f"ref {record.reference}")
    return "  ".join(parts)


def _history(args: argparse.Namespace) -> int:
    import dataclasses

    import orjson

    from journeykit.consent.history import history

    resolver, how = _resolver()
    count = 0
    for count, record in enumerate(  # noqa: B007 -- count is reported after the loop
        history(_paths(args).ledger, args.subject, resolver=resolver), start=1
    ):
        if args.json:
            _say(orjson.dumps(dataclasses.asdict(record)).decode())
        else:
            _say(_describe(record))
    if not args.json:
        _say(f"{count} record(s) for {args.subject!r} ({how}).")
    return 0


def _state(args: argparse.Namespace) -> int:
    import orjson

    from journeykit.consent.history import state_at

    at = _time(args.at, "--at")
    resolver, how = _resolver()
    state = state_at(_paths(args).ledger, args.subject, at, resolver=resolver)
    if args.json:
        _say(
            orjson.dumps(
                {
                    "subject": state.subject,
                    "at": state.at,
                    "purposes": {
                        p.purpose.value: {
                            "status": p.status,
                            "seq": p.record.seq if p.record else None,
                            "record_at": p.record.at if p.record else None,
                        }
                        for p in state.purposes
                    },
                }
            ).decode()
        )
        return 0
    _say(f"Consent of {args.subject!r} at {state.at} ({how}; {state.records_seen} record(s)):")
    for p in state.purposes:
        set_by = _describe(p.record) if p.record else "no record"
        _say(f"  {p.purpose.value:<16} {p.status:<8} {set_by}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from journeykit.consent.export import export_ledger

    start = _time(args.start, "--from") if args.start else None
    end = _time(args.end, "--to") if args.end else None
    ledger = _paths(args).ledger
    if args.out is None:
        export_ledger(ledger, sys.stdout, args.format, start=start, end=end, purpose=args.purpose)
        return 0
    tmp = args.out.with_name(args.out.name + ".partial")
    with tmp.open("w", encoding="utf-8", newline="") as out:
        count = export_ledger(ledger, out, args.format, start=start, end=end, purpose=args.purpose)
    tmp.replace(args.out)  # a failed export leaves no half file under the real name
    _say(f"exported {count} record(s) to {args.out}", err=True)
    return 0


def _report(args: argparse.Namespace) -> int:
    from journeykit.consent.report import write_report

    verification, _ = _verification(args)
    summary = write_report(_paths(args).ledger, args.out, verification)
    status = "intact" if verification.ok else "FAILED verification"
    _say(f"wrote {args.out}: {summary.records} records, ledger {status}")
    return 0


def _public_key(args: argparse.Namespace) -> int:
    from journeykit.consent.checkpoints import ENV_SIGNING_KEY_FILE, LedgerSigner
    from journeykit.consent.records import LedgerError

    signer = LedgerSigner.configured(args.data_dir)
    if signer is None:
        raise LedgerError(
            f"no signing key: set {ENV_SIGNING_KEY_FILE}, or let the ledger create its demo key "
            f"under {_paths(args).directory}"
        )
    pem = signer.public_key.pem().decode("ascii")
    if args.out is None:
        sys.stdout.write(pem)
    else:
        args.out.write_text(pem, encoding="ascii")
        _say(f"wrote public key {signer.key_id} to {args.out}", err=True)
    if signer.demo:
        _say("note: this is the embedded DEMO key stored beside the ledger", err=True)
    return 0


def _repair(args: argparse.Namespace) -> int:
    from journeykit.consent.repair import repair_checkpoints, repair_ledger

    paths = _paths(args)
    result = repair_ledger(paths.ledger)
    if result.repaired:
        _say(f"moved incomplete line {result.line} ({result.size} bytes) to {result.moved_to}")
    else:
        _say("nothing to repair: the ledger ends with a complete line")
    signed = repair_checkpoints(paths.checkpoints)
    if signed.repaired:
        _say(
            f"moved incomplete checkpoint line {signed.line} ({signed.size} bytes) to "
            f"{signed.moved_to}; the next checkpoint signs its records again"
        )
    return 0
