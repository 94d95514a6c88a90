"""``journeykit collector serve``: flags -> configuration -> logging -> uvicorn.

Flags default to ``None`` so that a flag left out lets the TOML file or the environment speak;
the defaults themselves live in the settings models (see ``config``). Nothing heavy is
imported until the command runs, so ``journeykit --help`` works without the collector extra.
"""

from __future__ import annotations

import argparse
import logging.config
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = ["add_serve_arguments", "run_serve"]

# Flag dest -> setting name, for flags whose dest is not the setting's name.
_DESTS = {
    "write_key": "write_keys",
    "trusted_proxy": "trusted_proxies",
    "cors_origin": "cors_origins",
}
_NOT_SETTINGS = frozenset({"command", "action", "config"})


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    """The ``serve`` flags; each overrides the same setting from the file and environment."""
    add = serve.add_argument
    add("--config", type=Path, metavar="FILE", help="TOML settings file (also $JOURNEYKIT_CONFIG)")
    add("--host", help="address to bind (default: 127.0.0.1)")
    add("--port", type=int, help="port (default: 8787)")
    add("--workers", type=int, metavar="N", help="worker processes (default: 1)")
    add("--data-dir", type=Path, help="where events land (default: ./data)")
    add(
        "--write-key",
        action="append",
        metavar="KEY",
        help="accepted write key (source 'default', no rate limit); repeatable. Without any "
        "key configured, a development key is generated under the data dir",
    )
    add("--admin-key", metavar="KEY", help="opens /admin/ (prefer $JOURNEYKIT_ADMIN_KEY)")
    add(
        "--trusted-proxy",
        action="append",
        metavar="CIDR",
        help="a reverse proxy whose X-Forwarded-For is believed; repeatable",
    )
    add(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="an origin whose browsers may call /v1/* (CORS); repeatable; default: none",
    )
    add("--fsync", choices=["always", "interval", "never"], help="default: always")
    add(
        "--consent-regime",
        choices=["opt_in", "opt_out"],
        help="opt_in (default, GDPR) or opt_out (CCPA)",
    )
    add("--log-level", choices=["critical", "error", "warning", "info", "debug", "trace"])
    add("--log-format", choices=["text", "json"], help="default: text")


def _dev_write_key(data_dir: Path) -> SecretStr:
    from journeykit.collector.keys import DEV_KEY_FILE, load_or_create_dev_key

    key, created = load_or_create_dev_key(data_dir)
    state = "generated" if created else "reused"
    # Printed on purpose: embedded-default mode exists so a developer can start in one step.
    print(
        "journeykit collector: embedded-default mode, no write keys configured.\n"
        f"  development write key ({state}): {key.get_secret_value()}\n"
        f"  stored in {data_dir / DEV_KEY_FILE}; set JOURNEYKIT_WRITE_KEYS for production.",
        flush=True,
    )
    return key


def _share_metrics(root: Path) -> None:
    """Turn on prometheus_client's multiprocess mode for this command's workers, under ``root``.

    Set in the environment before anything imports prometheus_client, so this process (which
    counts the torn lines it cuts at start) and the workers (which inherit it) all keep their
    values in one directory of this command's own, and any worker's scrape answers the sum
    (collector/metrics.py). Another command serving the same data dir keeps its own; those of
    commands no longer running (on this host) are removed: their counts are not this run's.
    """
    from journeykit.collector.compress import writer_alive
    from journeykit.collector.sink import host_tag

    host, started = host_tag(), time.time()
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob(f"{host}-*-*"):
        pid, _, at = old.name.removeprefix(f"{host}-").partition("-")
        if pid.isdigit() and at.isdigit() and not writer_alive(int(pid), int(at)):
            shutil.rmtree(old, ignore_errors=True)
    mine = root / f"{host}-{os.getpid()}-{int(started)}"
    mine.mkdir()
    # metrics.MULTIPROC_ENV, not imported from there: that would import prometheus_client.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mine)


def _fail(message: str) -> int:
    print(f"journeykit: {message}", file=sys.stderr)
    return 2


def run_serve(args: argparse.Namespace) -> int:
    """Run the collector until SIGTERM or Ctrl-C; 2 when the configuration is unusable."""
    try:
        import uvicorn
    except ImportError as exc:
        return _fail(f"the collector needs its extra: pip install 'journeykit[collector]' ({exc})")
    from journeykit.collector._tuning import tune_for_serving
    from journeykit.collector.config import (
        SETTINGS_JSON_ENV,
        ConfigError,
        load_config,
        settings_to_json,
    )
    from journeykit.collector.logs import logging_config

    flags: dict[str, Any] = {
        _DESTS.get(dest, dest): value
        for dest, value in vars(args).items()
        if dest not in _NOT_SETTINGS
    }
    try:
        config = load_config(flags, os.environ, args.config, _dev_write_key)
    except ConfigError as exc:
        return _fail(str(exc))
    except OSError as exc:  # the embedded key is stored in a data dir that cannot be used
        return _fail(f"cannot use the data dir: {exc.strerror or exc}: {exc.filename}")
    server, settings = config.server, config.collector
    if server.workers > 1:
        settings = settings.model_copy(update={"dedup_peers": True})
        try:
            _share_metrics(settings.data_dir / "metrics")
        except OSError as exc:
            return _fail(f"cannot use the data dir: {exc.strerror or exc}: {exc.filename}")
    try:
        # Only now: prometheus_client reads its multiprocess switch when first imported.
        from journeykit.collector.app import create_app
    except ImportError as exc:
        return _fail(f"the collector needs its extra: pip install 'journeykit[collector]' ({exc})")
    # Before the app is built: its start-up warnings (torn lines cut, an unsigned ledger) are
    # logged in the chosen format too, not by Python's last-resort handler.
    logging.config.dictConfig(logging_config(server.log_format, server.log_level))
    try:
        # Built here even for workers, so a key that cannot be used ends the command with a
        # message and exit 2 instead of failing inside every worker.
        app = create_app(settings)
    except ValueError as exc:
        return _fail(f"invalid collector settings: {exc}")
    except OSError as exc:
        return _fail(f"cannot use the data dir: {exc.strerror or exc}: {exc.filename}")
    except sqlite3.Error as exc:
        return _fail(f"a database in the data dir {settings.data_dir} cannot be used: {exc}")
    target: Any = app
    if server.workers > 1:
        app.state.collector.close()
        # Worker processes rebuild the settings from this variable. It holds the keys: it lives
        # in this process's environment and its children's only, never on disk or in argv.
        os.environ[SETTINGS_JSON_ENV] = settings_to_json(settings)
        target = "journeykit.collector.app:app_from_env"
    print(
        f"journeykit collector: listening on http://{server.host}:{server.port} "
        f"({server.workers} worker{'s' if server.workers > 1 else ''}), "
        f"events under {settings.data_dir / 'events'}",
        flush=True,
    )
    if server.workers == 1:
        tune_for_serving()  # workers tune their own, in app_from_env
    uvicorn.run(
        target,
        factory=server.workers > 1,
        host=server.host,
        port=server.port,
        workers=server.workers if server.workers > 1 else None,
        log_level=server.log_level,
        log_config=logging_config(server.log_format, server.log_level),
        access_log=False,
        server_header=False,
        # uvicorn would rewrite the peer address from X-Forwarded-For for loopback peers (or
        # any, under FORWARDED_ALLOW_IPS) before the collector sees it: `trusted_proxies`,
        # read by `client_ip`, is the only authority on which proxies are believed.
        proxy_headers=False,
    )
    return 0
