"""The ``journeykit`` command line.

``journeykit collector serve`` runs the collector and ``journeykit collector openapi`` prints
its OpenAPI document; ``journeykit protocol schema`` prints the wire protocol's JSON Schema;
``journeykit consent ...`` verifies and queries the consent ledger; ``journeykit dsr ...``
handles data-subject requests (the suppression list). Heavy imports (uvicorn,
starlette) happen only in the command that needs them, so ``journeykit --help`` works with the
SDK alone installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from journeykit.collector._dsr_cli import add_commands as add_dsr_commands
from journeykit.collector._dsr_cli import run as run_dsr
from journeykit.collector._serve import add_serve_arguments, run_serve
from journeykit.consent._cli import add_commands as add_consent_commands
from journeykit.consent._cli import run as run_consent

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="journeykit", description="Privacy-first tracking: collector and tools."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    collector = commands.add_parser("collector", help="run the tracking collector")
    collector_commands = collector.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = collector_commands.add_parser("serve", help="serve the tracking API")
    add_serve_arguments(serve)
    collector_commands.add_parser(
        "openapi", help="print the OpenAPI document of the HTTP API, for the default limits"
    )

    protocol = commands.add_parser("protocol", help="the wire protocol")
    protocol_commands = protocol.add_subparsers(dest="action", required=True, metavar="ACTION")
    protocol_commands.add_parser("schema", help="print the JSON Schema of a batch request")

    add_consent_commands(commands)
    add_dsr_commands(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    return run_serve(args)


def _schema() -> int:
    import orjson

    from journeykit.sdk.protocol import json_schema

    sys.stdout.write(
        orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        + "\n"
    )
    return 0


def _openapi() -> int:
    import orjson
    from pydantic import SecretStr

    from journeykit.collector.openapi import openapi_document
    from journeykit.collector.settings import CollectorSettings, WriteKey

    # The document reads only limits, never keys: a placeholder key makes default settings.
    placeholder = WriteKey(key=SecretStr("placeholder"))
    document = openapi_document(CollectorSettings(write_keys=(placeholder,)))
    sys.stdout.write(
        orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _build_parser().parse_args(argv)
    if args.command == "collector" and args.action == "serve":
        return _serve(args)
    if args.command == "collector" and args.action == "openapi":
        return _openapi()
    if args.command == "protocol" and args.action == "schema":
        return _schema()
    if args.command == "consent":
        return run_consent(args)
    if args.command == "dsr":
        return run_dsr(args)
    return 2  # argparse rejects unknown commands before this


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
