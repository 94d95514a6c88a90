"""OpenAPI operations beyond ingestion: decisions, suppressions and data-subject requests.

Split from ``openapi`` to keep each module about one thing; ``openapi_document`` merges these
paths into the document and the same tests cover them (every route documented, real answers
valid against the schemas).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from journeykit.collector.admin_dsr import DsrBody
from journeykit.collector.answers import (
    DsrErasureAnswer,
    DsrRequestList,
    SuppressionAnswer,
    SuppressionPage,
)
from journeykit.collector.suppression import SUBJECT_PATTERN, TEXT_PATTERN
from journeykit.sdk._decision import Decision

__all__ = [
    "ADMIN_SECURITY",
    "SUBJECT_PARAMETER",
    "TEXT_SCHEMA",
    "decision_paths",
    "dsr_paths",
    "suppression_paths",
]

TEXT_SCHEMA: Final[dict[str, Any]] = {"type": "string", "pattern": TEXT_PATTERN}
"""Free text without control characters (a suppression reason, a ticket reference)."""
SUBJECT_PARAMETER: Final[dict[str, Any]] = {
    "name": "subject",
    "in": "path",
    "required": True,
    "description": "A raw userId or anonymousId (URL-encoded); 1 to 512 characters, not only "
    "white space, no control characters.",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 512,
        "pattern": SUBJECT_PATTERN,
    },
}


class _Schemas(Protocol):
    def model(self, model: type[Any], *, answer: bool = False) -> dict[str, str]: ...


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


ADMIN_SECURITY: Final[list[dict[str, list[str]]]] = [{"adminBearer": []}, {"adminBasic": []}]


def _admin_operation(
    operation_id: str, summary: str, ok: dict[str, Any], refs: dict[str, Any]
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": ["admin"],
        "summary": summary,
        "security": ADMIN_SECURITY,
        "responses": {"200": ok, **refs},
    }


def decision_paths(schemas: _Schemas, refs: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/decisions/{subject}``; ``refs`` are the shared error responses by status."""
    decision = schemas.model(Decision, answer=True)
    bad_subject = {
        "description": "The subject cannot name anyone. Code: `invalid_subject`.",
        "content": _json({"$ref": "#/components/schemas/ErrorAnswer"}),
    }
    return {
        "/v1/decisions/{subject}": {
            "get": {
                "operationId": "decision",
                "tags": ["personalization"],
                "summary": "A subject's personalization decision",
                "description": "Segments, journey stage, next best action and recommendations, "
                "computed only when the subject granted personalization (else "
                "`not_consented`, empty); `unavailable` while the profile store cannot be "
                "reached. Authenticate with the write key (HTTP Basic); counts one event "
                "against the key's rate limit.",
                "security": [{"writeKey": []}],
                "parameters": [SUBJECT_PARAMETER],
                "responses": {
                    "200": {"description": "The decision.", "content": _json(decision)},
                    "400": bad_subject,
                    **refs,
                },
            }
        }
    }


def dsr_paths(schemas: _Schemas, refs: dict[str, Any]) -> dict[str, Any]:
    """The data-subject request endpoints; ``refs`` are the admin error responses by status."""
    body = {"required": True, "content": _json(schemas.model(DsrBody))}

    def operation(operation_id: str, summary: str, ok: dict[str, Any]) -> dict[str, Any]:
        return _admin_operation(operation_id, summary, ok, refs)

    zip_file = {"schema": {"type": "string", "contentMediaType": "application/zip"}}
    export = operation(
        "dsrExport",
        "Access request: everything held about a subject, as a zip with a manifest",
        {
            "description": "The zip (events.json, rejected.json, profile.json, decisions.json, "
            "consent_history.json, manifest.json).",
            "headers": {
                "X-Request-Id": {
                    "description": "The request's id in the request log.",
                    "schema": {"type": "string"},
                }
            },
            "content": {"application/zip": zip_file},
        },
    )
    export["requestBody"] = body
    erase = operation(
        "dsrErase",
        "Erasure request: delete a subject's events and profile, suppress them, log a receipt",
        {
            "description": "What was done.",
            "content": _json(schemas.model(DsrErasureAnswer, answer=True)),
        },
    )
    erase["requestBody"] = body
    listing = operation(
        "dsrRequests",
        "The request log with status and legal deadline",
        {"description": "The log.", "content": _json(schemas.model(DsrRequestList, answer=True))},
    )
    return {
        "/admin/v1/dsr/export": {"post": export},
        "/admin/v1/dsr/erase": {"post": erase},
        "/admin/v1/dsr/requests": {"get": listing},
    }


def suppression_paths(schemas: _Schemas, refs: dict[str, Any]) -> dict[str, Any]:
    """The suppression list's admin endpoints; ``refs`` are the admin error responses."""
    answer = _json(schemas.model(SuppressionAnswer, answer=True))
    page = _json(schemas.model(SuppressionPage, answer=True))
    subject = {
        **SUBJECT_PARAMETER,
        "description": "A raw userId or anonymousId (URL-encoded), or its pseudonym; 1 to 512 "
        "characters, not only white space, no control characters.",
    }
    one = {"description": "The subject's state.", "content": answer}
    put = _admin_operation("suppress", "Suppress a subject: later events are dropped", one, refs)
    put["responses"]["201"] = {"description": "Added to the list.", "content": answer}
    put["responses"]["200"] = {"description": "Already on the list.", "content": answer}
    put["requestBody"] = {
        "required": False,
        "content": _json(
            {
                "type": "object",
                "properties": {"reason": {**TEXT_SCHEMA, "maxLength": 200}},
                "additionalProperties": False,
            }
        ),
    }
    listing = _admin_operation(
        "listSuppressions",
        "A page of the suppression list",
        {"description": "The page.", "content": page},
        refs,
    )
    listing["parameters"] = [
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
        },
        {
            "name": "after",
            "in": "query",
            "required": False,
            "description": "The `next` of the previous page.",
            "schema": {"type": "string"},
        },
    ]
    get = _admin_operation("getSuppression", "Whether a subject is suppressed", one, refs)
    delete = _admin_operation("unsuppress", "Lift a subject's suppression", one, refs)
    for operation in (get, put, delete):
        operation["parameters"] = [subject]
    return {
        "/admin/v1/suppressions": {"get": listing},
        "/admin/v1/suppressions/{subject}": {"get": get, "put": put, "delete": delete},
    }
