"""gunicorn settings for the example shop: each worker delivers its events before it exits."""

from typing import Any

bind = "127.0.0.1:8000"
preload_app = True  # the app (and its journeykit client) is made once, before the fork
workers = 2


def worker_exit(server: Any, worker: Any) -> None:
    # The SDK drains for `exit_timeout` (1 s) at exit anyway; a flush here can wait longer.
    from journeykit.sdk.integrations.flask import client_of

    client_of(worker.wsgi).flush(timeout=5)
