"""Log output for ``journeykit collector serve``: text for people or one JSON object a line.

Only the command configures logging (through uvicorn's ``log_config``, which every worker
process applies for itself); importing journeykit never touches logging.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

__all__ = ["HideQueryFilter", "JsonFormatter", "logging_config"]

# Loggers the command sets up: ours and uvicorn's (uvicorn.error carries its startup lines).
_LOGGERS = ("journeykit", "uvicorn", "uvicorn.error", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``.

    An exception, when there is one, is added as ``exc_info`` text.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class HideQueryFilter(logging.Filter):
    """uvicorn's trace lines (``--log-level trace``) print each request's ASGI scope: headers
    hidden, the query string not. A beacon's write key comes as ``?writeKey=``: hidden too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.asgi" and isinstance(record.args, tuple):
            record.args = tuple(_hide_query(arg) for arg in record.args)
        return True


def _hide_query(value: object) -> object:
    if isinstance(value, dict) and value.get("query_string"):
        return {**value, "query_string": "<...>"}
    return value


def logging_config(log_format: Literal["text", "json"], level: str) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for uvicorn's ``log_config``: stderr, one format."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    # uvicorn's "trace" level (5) is no stdlib name; DEBUG is as verbose as logging gets.
    name = "DEBUG" if level.lower() == "trace" else level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"hide_query": {"()": f"{__name__}.HideQueryFilter"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["hide_query"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            logger: {"handlers": ["default"], "level": name, "propagate": False}
            for logger in _LOGGERS
        },
    }
