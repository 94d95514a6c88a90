"""``journeykit dsr ...``: data-subject requests from the command line.

``suppress`` and ``unsuppress`` edit the suppression list of a data dir, which running
collectors pick up within :data:`~journeykit.collector.suppression.REFRESH_SECONDS`;
``suppressions`` lists it; ``export``, ``erase`` and ``requests`` (in ``_dsr_requests_cli``)
answer access and erasure requests and show their log. Each command is one
``command(name, help, handler)`` call. The
pseudonymization key comes from the same places as the collector's (``--config``,
``JOURNEYKIT_PSEUDONYM_KEY``, ...), so that subjects match what the collector computes.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from journeykit.collector._dsr_requests_cli import (
    add_request_commands,
    fail,
    failed,
    message_of,
    say,
    settings_of,
)

__all__ = ["add_commands", "run"]

_Handler = Callable[[argparse.Namespace], int]


def add_commands(subparsers: Any) -> None:
    """Register the ``dsr`` command and its subcommands on ``subparsers``."""
    dsr = subparsers.add_parser(
        "dsr", help="data-subject requests: access export, erasure, suppression, request log"
    )
    actions = dsr.add_subparsers(dest="action", required=True, metavar="ACTION")

    def command(name: str, text: str, handler: _Handler) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=text, description=text)
        parser.add_argument("--data-dir", type=Path, help="data directory (default: data)")
        parser.add_argument(
            "--config", type=Path, metavar="FILE", help="the collector's TOML settings file"
        )
        parser.set_defaults(dsr_handler=handler)
        return parser

    subject_help = "userId or anonymousId as sent, or its pseudonym (hmac-sha256:...)"
    suppress = command("suppress", "drop the subject's later events (accepted, counted)", _suppress)
    suppress.add_argument("subject", metavar="SUBJECT", help=subject_help)
    suppress.add_argument("--reason", help="short note kept with the entry; no personal data")
    unsuppress = command("unsuppress", "lift a subject's suppression", _unsuppress)
    unsuppress.add_argument("subject", metavar="SUBJECT", help=subject_help)
    listing = command("suppressions", "list the suppression list (pseudonyms)", _list)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    add_request_commands(command)


def run(args: argparse.Namespace) -> int:
    """Run the ``dsr`` subcommand parsed into ``args``; returns the exit status."""
    handler: _Handler = args.dsr_handler
    return handler(args)


def _open(args: argparse.Namespace) -> Any:
    """The data dir's suppression list under the collector's key, or an error message."""
    from journeykit.collector.config import ConfigError
    from journeykit.collector.keys import load_pseudonymizer
    from journeykit.collector.suppression import SuppressionList

    try:
        settings = settings_of(args)
        return SuppressionList.open(settings.data_dir, load_pseudonymizer(settings))
    except (ConfigError, ValueError, OSError, sqlite3.Error) as exc:
        return message_of(exc)


def _suppress(args: argparse.Namespace) -> int:
    from journeykit.collector.suppression import REFRESH_SECONDS, InvalidSubject

    suppressions = _open(args)
    if isinstance(suppressions, str):
        return fail(suppressions)
    try:
        before = suppressions.get(args.subject)
        entry = suppressions.add(args.subject, args.reason, via="cli")
    except (InvalidSubject, sqlite3.Error) as exc:
        return failed(exc)
    finally:
        suppressions.close()
    state = "already suppressed since" if before is not None else "suppressed at"
    say(f"{entry.subject}: {state} {entry.created_at}")
    if before is None:
        say(f"running collectors drop its events within {REFRESH_SECONDS:g} s")
    return 0


def _unsuppress(args: argparse.Namespace) -> int:
    from journeykit.collector.suppression import InvalidSubject

    suppressions = _open(args)
    if isinstance(suppressions, str):
        return fail(suppressions)
    try:
        pseudonym = suppressions.pseudonyms(args.subject)[0]
        removed = suppressions.remove(args.subject)
    except (InvalidSubject, sqlite3.Error) as exc:
        return failed(exc)
    finally:
        suppressions.close()
    say(f"{pseudonym}: {'suppression lifted' if removed else 'was not suppressed'}")
    return 0


def _list(args: argparse.Namespace) -> int:
    import orjson

    suppressions = _open(args)
    if isinstance(suppressions, str):
        return fail(suppressions)
    try:
        after: str | None = None
        while page := suppressions.entries(1_000, after):
            for entry in page:
                if args.json:
                    sys.stdout.write(orjson.dumps(entry.as_json()).decode() + "\n")
                else:
                    reason = f"  {entry.reason}" if entry.reason else ""
                    say(f"{entry.subject}  {entry.created_at}  {entry.via}{reason}")
            after = page[-1].subject
    finally:
        suppressions.close()
    return 0
