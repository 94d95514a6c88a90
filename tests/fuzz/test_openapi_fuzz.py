"""Schemathesis against the collector's own ``/openapi.json``: the answers keep the document.

Every operation of the document is exercised with schema-conforming and schema-violating
requests, with the write key (or the admin key for ``/admin/``) so that generated bodies reach
validation. All of Schemathesis's checks run (no 5xx, documented status codes, content types,
headers and bodies), except one that contradicts the protocol on purpose: a well-formed batch
whose events are invalid answers 200 with per-event rejections (docs/protocol.md), which
Schemathesis's ``negative_data_rejection`` would call "schema-violating request accepted".
Runs in-process against a real uvicorn server, with Hypothesis derandomized (see conftest).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from helpers import WRITE_KEY, RunningCollector, basic_auth, running_collector
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

SCALE = int(os.environ.get("JOURNEYKIT_FUZZ_SCALE", "1"))
ADMIN_KEY = "admin-key-for-schemathesis-0123"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    data = tmp_path_factory.mktemp("openapi") / "data"
    with running_collector(data, fsync="never", admin_key=SecretStr(ADMIN_KEY)) as running:
        yield running


def operations(server: RunningCollector) -> list[Any]:
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    assert found, "the document lists no operations"
    return found


def prepare(case: Any, *, credentials: bool) -> dict[str, str]:
    """Headers for ``case``: its own, minus a compression it did not apply, plus a key."""
    own = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if own.get("Content-Encoding") not in (None, "identity"):
        # Schemathesis picks gzip/deflate from the enum but cannot compress the body to match;
        # real compressed bodies are fuzzed in test_http_fuzz.py.
        own.pop("Content-Encoding")
    if credentials:
        key = (
            {"Authorization": f"Bearer {ADMIN_KEY}"}
            if case.path.startswith("/admin/")
            else basic_auth(WRITE_KEY)
        )
        own = {**own, **key}
    # Kept on the case too: Schemathesis re-checks the case it sent, and a case whose required
    # Authorization header it generated was taken away would count as schema-violating.
    case.headers = own
    return own


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_keeps_its_documented_answers(
    server: RunningCollector, mode: GenerationMode
) -> None:
    excluded = [negative_data_rejection] if mode is GenerationMode.NEGATIVE else []
    failures: list[str] = []
    for operation in operations(server):

        @settings(
            max_examples=10 * SCALE,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            headers = prepare(case, credentials=True)
            case.call_and_validate(base_url=server.url, headers=headers, excluded_checks=excluded)

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing to violate, e.g. GET /healthz
        except (Exception, BaseExceptionGroup) as exc:  # run all; report every failure
            failures.append(f"{operation.label}:\n{exc}")
    assert not failures, "\n\n".join(failures)


def test_every_operation_without_credentials_is_refused_as_documented(
    server: RunningCollector,
) -> None:
    public = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
    for operation in operations(server):
        if operation.path in public:
            continue

        @settings(max_examples=5 * SCALE, suppress_health_check=[HealthCheck.too_slow])
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            prepare(case, credentials=False)
            if isinstance(case.body, dict):
                case.body.pop("writeKey", None)
            response = case.call(base_url=server.url)
            # 401 for a request that gets as far as the key check; 415 and 400 come first
            # only for ingestion bodies that cannot carry a writeKey.
            assert response.status_code in (400, 401, 415), (case.path, response.text)
            if case.path.startswith("/admin/"):
                assert response.status_code == 401
            case.validate_response(response)

        check()
