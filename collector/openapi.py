"""The collector's OpenAPI 3.1 document, generated from the models, and its ``/openapi.json`` route.

Request bodies come from ``journeykit.sdk.protocol``, answers from ``journeykit.collector.answers``
and error codes from ``errors.ERROR_CODES``; nothing is hand-written JSON that could drift from the
code. Tests check that every route of the app is documented, that every error code raised is
listed, and that real answers validate against the documented schemas. ``docs/openapi.json`` is
the document for the default settings (``make openapi``).
"""

from __future__ import annotations

import functools
from typing import Any, Final

import orjson
from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeykit.collector.answers import (
    AdminStatus,
    BatchAnswer,
    ErrorAnswer,
    HealthAnswer,
)
from journeykit.collector.errors import ERROR_CODES
from journeykit.collector.ingest_paths import BATCH_ALIASES, BEACON_BATCH, SINGLE_ALIASES
from journeykit.collector.openapi_paths import (
    ADMIN_SECURITY,
    decision_paths,
    dsr_paths,
    suppression_paths,
)
from journeykit.collector.settings import CollectorSettings
from journeykit.sdk.protocol import MESSAGE_TYPES, Batch

__all__ = ["OPENAPI_VERSION", "openapi_document", "openapi_route"]

OPENAPI_VERSION: Final = "3.1.0"
_API_VERSION: Final = "v1"  # the version of the HTTP API (its path prefix), not of the package
_REF: Final = "#/components/schemas/{model}"


class _Schemas:
    """Collects JSON Schemas under ``components/schemas``, refusing two different ones per name."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def add(self, name: str, schema: dict[str, Any]) -> dict[str, str]:
        defs = schema.pop("$defs", {})
        for sub_name, sub in {**defs, name: schema}.items():
            if self.schemas.setdefault(sub_name, sub) != sub:
                raise ValueError(f"two different schemas are named {sub_name!r}")
        return {"$ref": _REF.format(model=name)}

    def model(self, model: type[Any], *, answer: bool = False) -> dict[str, str]:
        mode: JsonSchemaMode = "serialization" if answer else "validation"
        schema = TypeAdapter(model).json_schema(ref_template=_REF, mode=mode)
        return self.add(model.__name__, schema)


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_RETRY, _CHALLENGE = ("Retry-After",), ("WWW-Authenticate",)
_ADMIN_400: Final = ("invalid_subject", "invalid_body", "invalid_query")
# components/responses: name -> (status, codes, headers, summary; ``{s}`` is the settings).
_ERRORS: Final[dict[str, tuple[int, list[str], tuple[str, ...], str]]] = {
    "BadRequest": (
        400,
        [c for c in ERROR_CODES[400] if c not in _ADMIN_400],
        (),
        "The request is malformed; nothing was stored",
    ),
    "AdminBadRequest": (
        400,
        [*_ADMIN_400],
        (),
        "The subject, body or query cannot be used; nothing was changed",
    ),
    "Unauthorized": (401, ["unauthorized"], _CHALLENGE, "No write key, or a wrong one"),
    "DecisionsDisabled": (404, ["decisions_disabled"], (), "This collector keeps no profiles"),
    "NotFound": (404, ["not_found"], (), "No endpoint at this path (any path not listed here)"),
    "MethodNotAllowed": (
        405,
        ["method_not_allowed"],
        ("Allow",),
        "The path is served, not for this method (any method not listed for it)",
    ),
    "RequestTimeout": (
        408,
        ["request_timeout"],
        (),
        "The body did not arrive within {s.request_timeout_seconds:g} s; nothing was stored",
    ),
    "PayloadTooLarge": (
        413,
        [*ERROR_CODES[413]],
        (),
        "The body is over {s.max_request_bytes:,} bytes, compressed or inflated, or the batch "
        "holds over twice {s.max_batch_events:,} messages; nothing was stored",
    ),
    "ClientClosedRequest": (
        499,
        ["client_closed_request"],
        (),
        "The client closed the connection before the whole body arrived; nothing was stored. "
        "Never heard by the client: the status counts such requests in the metrics, as nginx does",
    ),
    "UnsupportedMediaType": (415, [*ERROR_CODES[415]], (), "Wrong Content-Type or encoding"),
    "RateLimited": (
        429,
        ["rate_limited"],
        _RETRY,
        "The write key's rate limit (events per second, each event counted) is used up; "
        "nothing was stored, resend after Retry-After",
    ),
    "InternalError": (500, ["internal_error"], (), "A bug in the collector"),
    "StorageUnavailable": (
        503,
        ["storage_unavailable"],
        _RETRY,
        "The collector cannot store events; nothing was stored, resend after Retry-After "
        "({s.retry_after_seconds} s)",
    ),
    "NotReady": (503, ["not_ready"], (), "The collector cannot store events"),
    "AdminUnauthorized": (401, ["unauthorized"], _CHALLENGE, "No admin key, or a wrong one"),
    "AdminForbidden": (
        403,
        ["forbidden", "admin_disabled"],
        (),
        "A write key cannot open admin endpoints; with no admin key configured every admin "
        "request is refused",
    ),
}


def _responses(settings: CollectorSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (status, codes, headers, summary) in _ERRORS.items():
        meanings = "; ".join(f"`{c}`: {ERROR_CODES[status][c]}" for c in codes)
        narrowed = {"properties": {"error": {"properties": {"code": {"enum": codes}}}}}
        schema = {"allOf": [{"$ref": _REF.format(model="ErrorAnswer")}, narrowed]}
        out[name] = {
            "description": f"{summary.format(s=settings)}. Codes: {meanings}.",
            "content": _json_content(schema),
        }
        if headers:
            out[name]["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    return out


def _refs(*names: str) -> dict[str, Any]:
    return {str(_ERRORS[n][0]): {"$ref": f"#/components/responses/{n}"} for n in names}


_INGEST_ERRORS: Final = [
    n
    for n in _ERRORS
    if n
    not in (
        "NotReady",
        "AdminUnauthorized",
        "AdminForbidden",
        "AdminBadRequest",
        "DecisionsDisabled",
        "NotFound",
        "MethodNotAllowed",
    )
]


def _ingest(
    operation_id: str, summary: str, body: dict[str, str], answer: dict[str, str], limits: str
) -> dict[str, Any]:
    return {
        "post": {
            "operationId": operation_id,
            "tags": ["tracking"],
            "summary": summary,
            "description": (
                f"{limits} Events that do not match their schema do not fail the request: they "
                "are listed in `rejected` of the 200 answer and kept aside. Authenticate with "
                "HTTP Basic (the write key as user name, empty password) or, as Segment allows, "
                '`"writeKey"` in the body.'
            ),
            # {}: the key may instead come in the body, which HTTP security cannot express.
            "security": [{"writeKey": []}, {}],
            "parameters": [{"$ref": "#/components/parameters/Content-Encoding"}],
            "requestBody": {
                "required": True,
                "description": "JSON; text/plain is accepted for navigator.sendBeacon.",
                "content": {"application/json": {"schema": body}, "text/plain": {"schema": body}},
            },
            "responses": {
                "200": {
                    "description": "The request was well formed; what became of each event.",
                    "content": _json_content(answer),
                },
                **_refs(*_INGEST_ERRORS),
            },
        }
    }


def _get(
    operation_id: str, tag: str, summary: str, ok: dict[str, Any], *errors: str
) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "tags": [tag],
            "summary": summary,
            "responses": {"200": ok, **_refs(*errors, "InternalError")},
        }
    }


def _single_body(schemas: _Schemas, name: str, batch: dict[str, Any]) -> dict[str, str]:
    """The body of ``/v1/<type>``: the message, with ``type`` optional and a ``writeKey``."""
    message = schemas.schemas[name]
    body = {
        **message,
        "description": f"{message['description']} The body of POST /v1/{name.lower()}; `type` "
        "may be left out.",
        "properties": {**message["properties"], "writeKey": batch["properties"]["writeKey"]},
        "required": [f for f in message["required"] if f != "type"],
        "title": f"{name}Request",
    }
    return schemas.add(f"{name}Request", body)


def openapi_document(settings: CollectorSettings) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the collector configured by ``settings``.

    Args:
        settings: its limits (request and event bytes, batch events, Retry-After) are written
            into the descriptions and the batch schema; no key or path is.

    Returns:
        The document as plain JSON-compatible data; ``openapi_route`` serves it.
    """
    s = settings
    schemas = _Schemas()
    batch_ref = schemas.model(Batch)
    batch = schemas.schemas["Batch"]
    batch["properties"]["batch"]["maxItems"] = s.max_batch_events
    answer = schemas.model(BatchAnswer, answer=True)
    schemas.model(ErrorAnswer, answer=True)
    limits = (
        f"Limits: {s.max_request_bytes:,} bytes a request, compressed and inflated (else 413); "
        f"{s.max_event_bytes:,} bytes an event and {s.max_batch_events:,} events a batch (the "
        f"rest are rejected one by one; a batch of over {2 * s.max_batch_events:,} is refused "
        "whole with 413)."
    )
    paths: dict[str, Any] = {
        "/v1/batch": _ingest("batch", "Send a batch of messages", batch_ref, answer, limits)
    }
    for kind in MESSAGE_TYPES:
        name = kind.capitalize()  # the message model's name, from the batch schema's $defs
        body = _single_body(schemas, name, batch)
        paths[f"/v1/{kind}"] = _ingest(kind, f"Send one {kind} message", body, answer, limits)
    # Other clients' paths for the same operations (ingest_paths).
    for path, clients in BATCH_ALIASES.items():
        summary = f"POST /v1/batch under another path: {clients}"
        paths[path] = _ingest(f"batch_{path.rsplit('/', 1)[1]}", summary, batch_ref, answer, limits)
    for path, kind in SINGLE_ALIASES.items():
        summary = f"POST /v1/{kind} under another path: analytics.js's standard delivery"
        body = {"$ref": f"#/components/schemas/{kind.capitalize()}Request"}
        paths[path] = _ingest(f"{kind}_{path.rsplit('/', 1)[1]}", summary, body, answer, limits)
    beacon = _ingest(
        "batch_beacon",
        "POST /v1/batch for a beacon: RudderStack's JavaScript SDK's sendBeacon transport",
        batch_ref,
        answer,
        limits,
    )
    # A beacon cannot set headers: its key may come in the query instead.
    beacon["post"]["security"] = [{"writeKey": []}, {"writeKeyQuery": []}, {}]
    paths[BEACON_BATCH] = beacon
    health = {
        "description": "Yes.",
        "content": _json_content(schemas.model(HealthAnswer, answer=True)),
    }
    paths["/healthz"] = _get("healthz", "operations", "The process is up", health)
    paths["/readyz"] = _get(
        "readyz", "operations", "The data directory is writable", health, "NotReady"
    )
    prometheus = {"schema": {"type": "string"}}
    paths["/metrics"] = _get(
        "metrics",
        "operations",
        "Prometheus metrics (text exposition format); with --workers N, of all workers",
        {"description": "The metrics.", "content": {"text/plain": prometheus}},
    )
    status = {
        "description": "What this process serves.",
        "content": _json_content(schemas.model(AdminStatus, answer=True)),
    }
    paths["/admin/v1/status"] = _get(
        "adminStatus",
        "admin",
        "Version, pid, uptime, data dir, write keys and sources",
        status,
        "AdminUnauthorized",
        "AdminForbidden",
    )
    paths["/admin/v1/status"]["get"]["security"] = ADMIN_SECURITY
    admin_errors = ("AdminBadRequest", "AdminUnauthorized", "AdminForbidden")
    admin_refs = _refs(*admin_errors, "ClientClosedRequest", "StorageUnavailable", "InternalError")
    paths.update(suppression_paths(schemas, admin_refs))
    paths.update(
        decision_paths(
            schemas, _refs("Unauthorized", "DecisionsDisabled", "RateLimited", "InternalError")
        )
    )
    dsr_errors = _refs(
        *admin_errors,
        "RequestTimeout",
        "ClientClosedRequest",
        "StorageUnavailable",
        "InternalError",
    )
    paths.update(dsr_paths(schemas, dsr_errors))
    document = {"description": "This document.", "content": _json_content({"type": "object"})}
    paths["/openapi.json"] = _get("openapi", "operations", "This OpenAPI document", document)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "journeykit collector",
            "version": _API_VERSION,
            "summary": "Segment-compatible tracking API with consent enforcement.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "tracking", "description": "Segment's HTTP Tracking API"},
            {"name": "personalization", "description": "Decisions computed from profiles"},
            {"name": "operations", "description": "Health, readiness, metrics"},
            {"name": "admin", "description": "Needs the admin key; a write key is 403"},
        ],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.schemas.items())),
            "responses": _responses(s),
            "parameters": {
                "Content-Encoding": {
                    "name": "Content-Encoding",
                    "in": "header",
                    "required": False,
                    "description": "How the body is compressed; inflated within the size limit.",
                    "schema": {"enum": ["identity", "gzip", "x-gzip", "deflate"]},
                }
            },
            "headers": {
                "Retry-After": {
                    "description": "Whole seconds to wait before resending the same request.",
                    "schema": {"type": "integer", "minimum": 1},
                },
                "WWW-Authenticate": {
                    "description": "The scheme to authenticate with.",
                    "schema": {"type": "string"},
                },
                "Allow": {
                    "description": "The methods the path is served for.",
                    "schema": {"type": "string"},
                },
            },
            "securitySchemes": {
                "writeKeyQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "writeKey",
                    "description": "The write key in the query, on the beacon path only, when "
                    "neither the Authorization header nor the body carries one.",
                },
                "writeKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "The write key as user name, empty password. Alternatively "
                    '`"writeKey"` in the JSON body.',
                },
                "adminBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Authorization: Bearer <admin key>.",
                },
                "adminBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "The admin key as user name, empty password.",
                },
            },
        },
    }


def openapi_route(settings: CollectorSettings) -> Route:
    """``GET /openapi.json``: the document, built at its first request and then kept."""

    @functools.cache
    def body() -> bytes:
        return orjson.dumps(openapi_document(settings))

    async def openapi(request: Request) -> Response:
        return Response(body(), media_type="application/json")

    return Route("/openapi.json", openapi, methods=["GET"])
