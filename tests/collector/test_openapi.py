"""``GET /openapi.json``: a valid OpenAPI 3.1 document of every route, which real answers match."""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import ROOT, RunningCollector, basic_auth, running_collector
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from pydantic import SecretStr
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Route

from journeykit.collector.answers import BatchAnswer, ErrorAnswer
from journeykit.collector.errors import ERROR_CODES, error_body
from journeykit.collector.ingest import IngestResult, Rejection
from journeykit.collector.openapi import openapi_document
from journeykit.collector.settings import CollectorSettings

ADMIN_KEY = "admin-key-0123456789abcdef"
DOC_URI = "urn:journeykit:openapi"


def fetch(c: RunningCollector) -> dict[str, Any]:
    response = httpx.get(c.url + "/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    return document


def pointer(document: dict[str, Any], ref: str) -> Any:
    """Follow a local ``#/a/b`` reference; KeyError when it does not resolve."""
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def check(document: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    """Validate a real answer's JSON body and headers against what the document says of it."""
    answer = document["paths"][path][method]["responses"][str(response.status_code)]
    location = f"/paths/{path.replace('/', '~1')}/{method}/responses/{response.status_code}"
    if "$ref" in answer:
        location = answer["$ref"][1:]
        answer = pointer(document, answer["$ref"])
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"{DOC_URI}#{location}/content/application~1json/schema"}
    Draft202012Validator(schema, registry=registry).validate(response.json())
    for header in answer.get("headers", {}):
        assert header in response.headers, header


def test_the_document_is_valid_openapi_3_1(collector: RunningCollector) -> None:
    document = fetch(collector)
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)
    assert httpx.get(collector.url + "/openapi.json").json() == document  # the kept copy


def test_the_committed_copy_is_current() -> None:
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    generated = openapi_document(CollectorSettings(write_keys=("placeholder",)))
    assert committed == generated, "run `make openapi` and commit docs/openapi.json"


def test_limits_from_the_settings_are_documented(tmp_path: Path) -> None:
    with running_collector(tmp_path, max_request_bytes=64_000, max_batch_events=10) as c:
        document = fetch(c)
    batch = document["components"]["schemas"]["Batch"]["properties"]["batch"]
    assert batch["maxItems"] == 10
    assert "64,000 bytes" in document["paths"]["/v1/batch"]["post"]["description"]
    assert "64,000 bytes" in document["components"]["responses"]["PayloadTooLarge"]["description"]


def test_every_route_is_documented_and_nothing_else(collector: RunningCollector) -> None:
    document = fetch(collector)
    served = set()
    for route in collector.app.routes:
        assert isinstance(route, Route), f"{route!r}: teach this test other route kinds"
        # path_format: the path without convertors ({subject:path} -> {subject})
        served |= {(route.path_format, m.lower()) for m in route.methods or () if m != "HEAD"}
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served == documented
    # batch, six types, healthz, readyz, metrics, admin status, openapi, four suppression ones,
    # a decision, three data-subject request ones; other clients' paths for ingestion: two
    # for batches, six one-letter ones, the beacon
    assert len(served) == 29


def test_every_ref_resolves(collector: RunningCollector) -> None:
    document = fetch(collector)
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            if "propertyName" in node and isinstance(node.get("mapping"), dict):
                refs.extend(node["mapping"].values())  # a discriminator's mapping is refs too
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert len(refs) > 50
    for ref in refs:
        pointer(document, ref)
    unused = {f"#/components/schemas/{name}" for name in document["components"]["schemas"]}
    assert unused - set(refs) == set()


def test_real_answers_match_the_documented_schemas(collector: RunningCollector) -> None:
    document = fetch(collector)
    url, auth = collector.url, collector.auth()
    batch = {
        "batch": [
            {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m1"},
            {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m1"},
            {"type": "track", "event": "no identity", "messageId": "m2"},
            {"type": "nonsense", "userId": "u1"},
            17,
        ]
    }
    ok = httpx.post(url + "/v1/batch", json=batch, headers=auth)
    assert ok.status_code == 200
    answer = ok.json()
    assert (answer["accepted"], answer["duplicates"], len(answer["rejected"])) == (1, 1, 3)
    check(document, "/v1/batch", "post", ok)
    gzipped = gzip.compress(json.dumps({"userId": "u2", "event": "Signed Up"}).encode())
    headers = {**auth, "Content-Type": "text/plain", "Content-Encoding": "gzip"}
    single = httpx.post(url + "/v1/track", content=gzipped, headers=headers)
    assert single.json()["accepted"] == 1
    check(document, "/v1/track", "post", single)
    as_json = {**auth, "Content-Type": "application/json"}
    refusals = [
        httpx.post(url + "/v1/batch", json=batch, headers=basic_auth("wrong")),
        httpx.post(url + "/v1/batch", content=b"{", headers={**auth, "Content-Type": "text/xml"}),
        httpx.post(url + "/v1/batch", content=b"{", headers=as_json),
        httpx.post(url + "/v1/batch", content=b"x" * 600_000, headers=as_json),
    ]
    assert [r.status_code for r in refusals] == [401, 415, 400, 413]
    for refused in refusals:
        check(document, "/v1/batch", "post", refused)
    for path in ("/healthz", "/readyz"):
        check(document, path, "get", httpx.get(url + path))
    check(document, "/admin/v1/status", "get", httpx.get(url + "/admin/v1/status"))


def test_the_admin_status_matches_its_schema(tmp_path: Path) -> None:
    with running_collector(tmp_path, admin_key=SecretStr(ADMIN_KEY)) as c:
        document = fetch(c)
        status = httpx.get(c.url + "/admin/v1/status", headers=basic_auth(ADMIN_KEY))
        forbidden = httpx.get(c.url + "/admin/v1/status", headers=c.auth())
    assert (status.status_code, forbidden.status_code) == (200, 403)
    check(document, "/admin/v1/status", "get", status)
    check(document, "/admin/v1/status", "get", forbidden)


def test_suppression_answers_match_their_schemas(tmp_path: Path) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    one, every = "/admin/v1/suppressions/{subject}", "/admin/v1/suppressions"
    with running_collector(tmp_path, admin_key=SecretStr(ADMIN_KEY)) as c:
        document = fetch(c)
        url = c.url + every
        answers = [
            (one, "put", httpx.put(url + "/u1", json={"reason": "r"}, headers=admin)),
            (one, "put", httpx.put(url + "/u1", headers=admin)),
            (one, "get", httpx.get(url + "/u1", headers=admin)),
            (every, "get", httpx.get(url, headers=admin)),
            (one, "delete", httpx.delete(url + "/u1", headers=admin)),
            (one, "get", httpx.get(url + "/u1", headers=admin)),
            (one, "put", httpx.put(url + "/bad%01", headers=admin)),
            (every, "get", httpx.get(url + "?limit=0", headers=admin)),
            (one, "put", httpx.put(url + "/u1", headers=c.auth())),
            (one, "delete", httpx.delete(url + "/u1")),
        ]
    statuses = [r.status_code for _, _, r in answers]
    assert statuses == [201, 200, 200, 200, 200, 200, 400, 400, 403, 401]
    for path, method, response in answers:
        check(document, path, method, response)


@pytest.mark.parametrize(
    "result",
    [
        IngestResult(),
        IngestResult(
            accepted=3,
            duplicates=1,
            suppressed=2,
            dropped={"no_consent": 2, "denied:analytics": 1},
            rejected=[
                Rejection(0, "m0", [{"path": "userId", "message": "m", "type": "missing"}]),
                Rejection(4, None, [{"path": "", "message": "m", "type": "not_an_object"}]),
            ],
        ),
    ],
)
def test_the_ingest_answer_is_the_documented_model(result: IngestResult) -> None:
    # The app adds the batch's decisions (empty without profiles) to what ingestion answers.
    answer = {**result.as_json(), "decisions": {}}
    assert BatchAnswer.model_validate(answer).model_dump(mode="json") == answer


def test_the_error_body_is_the_documented_model() -> None:
    body = error_body("rate_limited", "slow down")
    assert ErrorAnswer.model_validate(body).model_dump(mode="json") == body


def _raised_codes() -> set[tuple[int | None, str]]:
    """``(status, code)`` of every literal ``HttpError``/``BodyError``/``error_body`` call."""
    found: set[tuple[int | None, str]] = set()
    for source in sorted((ROOT / "collector").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
            if node.func.id in ("HttpError", "BodyError") and isinstance(args[1], str):
                assert isinstance(args[0], int), ast.unparse(node)
                found.add((args[0], args[1]))
            elif node.func.id == "error_body" and isinstance(args[0], str):
                found.add((None, args[0]))
    return found


def test_every_raised_error_code_is_documented(collector: RunningCollector) -> None:
    raised = _raised_codes()
    assert len(raised) > 10
    for status, code in raised:
        statuses = [status] if status is not None else list(ERROR_CODES)
        assert any(code in ERROR_CODES[s] for s in statuses), (status, code)
    documented = {(s, c) for s, codes in ERROR_CODES.items() for c in codes}
    assert {c for _, c in documented} == {c for _, c in raised}, "ERROR_CODES lists a dead code"
    document = fetch(collector)
    in_document = set()
    for response in document["components"]["responses"].values():
        narrowed = response["content"]["application/json"]["schema"]["allOf"][1]
        in_document |= set(narrowed["properties"]["error"]["properties"]["code"]["enum"])
    assert in_document == {c for _, c in documented}
