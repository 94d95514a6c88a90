"""``journeykit dsr export | erase | requests``: access and erasure requests from the command line.

They open the data dir the way a collector does (same configuration sources, same
pseudonymization key, the same profile store) and may run while collectors serve it: erasure
rewrites files under the lock the collectors' writers honour, and the suppression list it adds
to is picked up by every collector within half a second.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from journeykit.collector.dsr.service import DsrService
    from journeykit.collector.settings import CollectorSettings

__all__ = ["add_request_commands", "fail", "say", "settings_of"]

_Command = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


def add_request_commands(command: _Command) -> None:
    """Register ``export``, ``erase`` and ``requests`` through the ``dsr`` group's ``command``."""
    subject_help = "what the person gave you: user id, anonymous id, email or phone number"

    def request_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("subject", metavar="SUBJECT", help=subject_help)
        parser.add_argument(
            "--law", choices=["gdpr", "ccpa"], default="gdpr", help="sets the deadline"
        )
        parser.add_argument("--reference", help="your ticket number, kept in the request log")

    export = command("export", "access request: everything held about SUBJECT, as a zip", _export)
    request_options(export)
    export.add_argument("--out", type=Path, required=True, metavar="FILE.zip")
    erase = command("erase", "erasure request: delete SUBJECT's data and suppress them", _erase)
    request_options(erase)
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for name in ("requests", "list"):  # `dsr list` is the name privacy officers look for
        listing = command(name, "the request log, with status and legal deadline", _requests)
        listing.add_argument("--open", action="store_true", help="only requests not completed")
        listing.add_argument("--json", action="store_true", help="one JSON object per line")


def say(line: str) -> None:
    """A line for the person at the terminal."""
    sys.stdout.write(line + "\n")


def fail(message: str) -> int:
    """Tell the person what went wrong; the exit status of a refused command (2)."""
    sys.stderr.write(f"journeykit: {message}\n")
    return 2


def failed(exc: BaseException) -> int:
    """:func:`fail` with what ``exc`` says."""
    return fail(message_of(exc))


def message_of(exc: BaseException) -> str:
    """What ``exc`` says; a database's error says which kind of error it is."""
    if isinstance(exc, sqlite3.Error):
        return f"a database under the data directory cannot be used: {exc}"
    return str(exc)


def settings_of(args: argparse.Namespace) -> CollectorSettings:
    """The collector's settings for a ``dsr`` command (``--data-dir``, ``--config``, env)."""
    from pydantic import SecretStr

    from journeykit.collector.config import load_config

    # Write keys do not matter here; a placeholder stands in when none is configured, which
    # selects the embedded-demo keys, as the collector does: but only for a data dir an
    # embedded collector made. Elsewhere a command run without the collector's environment
    # would suppress or erase under a made-up key (matching nothing) and leave demo keys
    # that the production collector would then pick up.
    from journeykit.collector.keys import DEV_KEY_FILE, DEV_PSEUDONYM_KEY_FILE

    flags = {"data_dir": args.data_dir}
    settings = load_config(flags, os.environ, args.config, lambda _: SecretStr("x")).collector
    embedded = any((settings.data_dir / f).exists() for f in (DEV_KEY_FILE, DEV_PSEUDONYM_KEY_FILE))
    if settings.demo_keys and not embedded:
        settings = settings.model_copy(update={"demo_keys": False})
    return settings


@contextmanager
def _service(args: argparse.Namespace) -> Iterator[DsrService]:
    from journeykit.collector.dsr.service import DsrService
    from journeykit.collector.keys import load_pseudonymizer
    from journeykit.collector.personalize import EngineProfiles, decision_settings
    from journeykit.collector.suppression import SuppressionList
    from journeykit.consent import ConsentLedger

    settings = settings_of(args)
    pseudonymizer = load_pseudonymizer(settings)
    suppression = SuppressionList.open(settings.data_dir, pseudonymizer)
    ledger = ConsentLedger.open(settings.data_dir, demo_key=settings.demo_keys)
    profiles = None
    if settings.decisions:
        from journeykit.collector.decisions import DecisionEngine

        engine = DecisionEngine.open(decision_settings(settings), settings.data_dir)
        profiles = EngineProfiles(engine)
    try:
        yield DsrService(settings.data_dir, pseudonymizer, suppression, ledger, profiles)
    finally:
        if profiles is not None:
            profiles.close()
        ledger.close()
        suppression.close()


def _errors() -> tuple[type[Exception], ...]:
    from journeykit.collector.config import ConfigError
    from journeykit.collector.suppression import InvalidSubject
    from journeykit.consent import ConsentError

    return (ConfigError, InvalidSubject, ConsentError, OSError, ValueError, sqlite3.Error)


def _export(args: argparse.Namespace) -> int:
    from journeykit.collector.dsr.requests import Law

    try:
        with _service(args) as service:
            request, manifest = service.export(
                args.subject, args.out, law=Law(args.law), reference=args.reference
            )
    except _errors() as exc:
        return failed(exc)
    say(f"{request.id}: access export written to {args.out}")
    for name, entry in manifest.files.items():
        say(f"  {name:22} {entry['count']:>8} item(s)  sha256 {entry['sha256']}")
    first, last = manifest.first_event_at, manifest.last_event_at
    say(f"  events from {first or '-'} to {last or '-'}; deadline was {request.deadline}")
    if manifest.shared:
        say(
            f"  shared devices: {', '.join(manifest.shared)} (also used by other users: their "
            "anonymous events are included, the other users' events are not; docs/dsr.md)"
        )
    return 0


def _erase(args: argparse.Namespace) -> int:
    from journeykit.collector.dsr.requests import Law

    if not args.yes:
        # Asked on the terminal, or read from a pipe ("echo y |"); no answer (end of input,
        # a script without --yes) is no, as an erasure cannot be undone.
        sys.stderr.write(f"Erase every event and the profile of {args.subject!r}? [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline()
        if answer.strip().lower() not in ("y", "yes"):
            return fail("nothing erased (answer y, or pass --yes in scripts)")
    try:
        with _service(args) as service:
            report = service.erase(args.subject, law=Law(args.law), reference=args.reference)
    except _errors() as exc:
        return failed(exc)
    d = report.detail
    say(f"{report.request.id}: erasure completed")
    say(f"  events removed:          {d['events_removed']} ({d['files_rewritten']} files)")
    say(f"  rejected events removed: {d['rejected_removed']}")
    if d.get("torn_removed"):
        say(f"  torn fragments removed:  {d['torn_removed']}")
    say(f"  profiles deleted:        {d['profiles_deleted']}")
    say(f"  ids suppressed:          {d['ids_suppressed']}")
    if d["shared_device_ids"]:
        say(
            f"  shared device ids:       {d['shared_device_ids']} (suppressed too: other users' "
            "later events from them are dropped; docs/dsr.md)"
        )
    say(f"  ledger receipt:          seq {d['ledger_receipt_seq']}")
    return 0


def _requests(args: argparse.Namespace) -> int:
    import orjson

    from journeykit.collector.dsr.requests import RequestLog, RequestStatus

    try:
        data_dir = settings_of(args).data_dir
    except _errors() as exc:
        return failed(exc)
    now = datetime.now(UTC)
    for request in RequestLog(data_dir).requests():
        if args.open and request.status is RequestStatus.COMPLETED:
            continue
        if args.json:
            body: dict[str, Any] = {**request.as_json(), "overdue": request.overdue(now)}
            sys.stdout.write(orjson.dumps(body).decode() + "\n")
            continue
        late = "  OVERDUE" if request.overdue(now) else ""
        ref = f"  ref {request.reference}" if request.reference else ""
        say(
            f"{request.id}  {request.kind.value:13} {request.status.value:9} "
            f"due {request.deadline}  {request.law.value}{ref}{late}"
        )
    return 0
