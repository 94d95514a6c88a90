"""Errors that end a request with a status code, and the JSON body they answer with."""

from __future__ import annotations

from typing import Any, Final

from pydantic import ValidationError

__all__ = ["ERROR_CODES", "HttpError", "error_body", "validation_errors"]


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


# Documented in /openapi.json; a test fails when a raised code is missing here.
ERROR_CODES: Final[dict[int, dict[str, str]]] = {
    400: {
        "malformed_json": "the body is not valid JSON",
        "not_an_object": "the body is not a JSON object",
        "not_a_batch": 'POST /v1/batch without a "batch" array',
        "invalid_envelope": '"context" is not an object, or "sentAt" not a date-time',
        "bad_request": "Content-Length is not a number",
        "bad_encoding": "the gzip or deflate body is broken or truncated",
        "invalid_subject": "admin: the subject is empty, over 512 characters or has control "
        "characters, or the reason is over 200 characters",
        "invalid_body": 'admin: the body is not {"reason": "..."} or over 4 KB',
        "invalid_query": "admin: a query parameter is out of range",
    },
    401: {"unauthorized": "the key is missing or wrong"},
    403: {
        "forbidden": "a write key was sent to an admin endpoint",
        "admin_disabled": "no admin key is configured",
    },
    404: {
        "decisions_disabled": "GET /v1/decisions: this collector keeps no profiles",
        "not_found": "no endpoint at this path",
    },
    405: {"method_not_allowed": "the path is served, not for this method (see Allow)"},
    408: {"request_timeout": "the body was not received within request_timeout_seconds"},
    413: {
        "payload_too_large": "the body, or the inflated body, is over the limit",
        "too_many_events": "a batch of more than twice the event limit (5,000 by default)",
        "shared_fields_too_large": "the batch-level context and integrations, copied into "
        "every message, come to over twice the request limit",
    },
    415: {
        "unsupported_media_type": "Content-Type is neither application/json nor text/plain",
        "unsupported_encoding": "Content-Encoding is not identity, gzip or deflate",
    },
    429: {"rate_limited": "the write key's event rate limit is used up"},
    499: {"client_closed_request": "the client hung up before the whole body arrived (metrics)"},
    500: {"internal_error": "a bug; logged, never a stack trace in the answer"},
    503: {
        "storage_unavailable": "the disk refused the write; nothing was stored",
        "not_ready": "the data directory is not writable",
    },
}
"""Every ``error.code`` the collector answers with, by HTTP status, with what it means."""


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
