"""The ``journeykit`` command line.

``journeykit collector serve`` runs the collector; ``journeykit protocol schema`` prints the
wire protocol's JSON Schema; ``journeykit consent ...`` verifies and queries the consent
ledger. Heavy imports (uvicorn, starlette) happen only in the command that needs them, so
``journeykit --help`` works with the SDK alone installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from journeykit.consent._cli import add_commands as add_consent_commands
from journeykit.consent._cli import run as run_consent

__all__ = ["main"]

DEFAULT_PORT = 8787


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="journeykit", description="Privacy-first tracking: collector and tools."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    collector = commands.add_parser("collector", help="run the tracking collector")
    collector_commands = collector.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = collector_commands.add_parser("serve", help="serve the tracking API")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: 8787)")
    serve.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="where events land (default: ./data)"
    )
    serve.add_argument(
        "--write-key",
        action="append",
        default=[],
        metavar="KEY",
        help="accepted write key; repeatable (default: $JOURNEYKIT_WRITE_KEYS, else a "
        "development key generated under the data dir)",
    )
    serve.add_argument(
        "--fsync",
        choices=["always", "interval", "never"],
        default="always",
        help="when accepted events are forced to disk (default: always)",
    )
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default: info)")

    protocol = commands.add_parser("protocol", help="the wire protocol")
    protocol_commands = protocol.add_subparsers(dest="action", required=True, metavar="ACTION")
    protocol_commands.add_parser("schema", help="print the JSON Schema of a batch request")

    add_consent_commands(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from journeykit.collector.app import create_app
    except ImportError as exc:
        print(
            "journeykit: the collector needs its extra: "
            f"pip install 'journeykit[collector]' ({exc})",
            file=sys.stderr,
        )
        return 2
    from pydantic import SecretStr, ValidationError

    from journeykit.collector.keys import DEV_KEY_FILE, keys_from_env, load_or_create_dev_key
    from journeykit.collector.settings import CollectorSettings

    data_dir: Path = args.data_dir
    keys = [SecretStr(k) for k in args.write_key if k.strip()] or keys_from_env()
    if not keys:
        key, created = load_or_create_dev_key(data_dir)
        keys = [key]
        state = "generated" if created else "reused"
        print(
            "journeykit collector: embedded-default mode, no write keys configured.\n"
            f"  development write key ({state}): {key.get_secret_value()}\n"
            f"  stored in {data_dir / DEV_KEY_FILE}; set JOURNEYKIT_WRITE_KEYS for production.",
            flush=True,
        )
    try:
        settings = CollectorSettings(data_dir=data_dir, write_keys=tuple(keys), fsync=args.fsync)
    except ValidationError as exc:
        print(f"journeykit: invalid collector settings:\n{exc}", file=sys.stderr)
        return 2
    print(
        f"journeykit collector: listening on http://{args.host}:{args.port}, "
        f"events under {data_dir / 'events'}",
        flush=True,
    )
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        server_header=False,
    )
    return 0


def _schema() -> int:
    import orjson

    from journeykit.sdk.protocol import json_schema

    sys.stdout.write(
        orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        + "\n"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _build_parser().parse_args(argv)
    if args.command == "collector" and args.action == "serve":
        return _serve(args)
    if args.command == "protocol" and args.action == "schema":
        return _schema()
    if args.command == "consent":
        return run_consent(args)
    return 2  # argparse rejects unknown commands before this


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
