"""Errors that end a request with a status code, and the JSON body they answer with."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

__all__ = ["HttpError", "error_body", "validation_errors"]


class HttpError(Exception):
    """Stop handling the request and answer ``status`` with a machine-readable ``code``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


_TAGS = frozenset({"track", "identify", "page", "screen", "group", "alias"})


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as ``{path, message, type}``, without echoing the input (it may be PII)."""
    out = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(err["loc"])
        if loc and loc[0] in _TAGS:  # the tagged union's branch name, not part of the message
            loc = loc[1:]
        kind = err["type"]
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            loc = ("type",)
        elif kind == "missing_identity":
            loc = ("userId",)
        out.append({"path": _path(loc), "message": err["msg"], "type": kind})
    return out
