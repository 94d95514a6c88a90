"""Any request to the ingestion endpoints gets a defined, documented answer, never a 500.

Hypothesis drives a real collector (uvicorn on 127.0.0.1) with arbitrary bytes, content types,
encodings, headers and credentials. Whatever comes in, the answer is one of 200, 400, 401, 413,
415 or 429, it is JSON, and a refusal has the documented ``{"ok": false, "error": {code,
message}}`` shape with a code listed for its status in ``errors.ERROR_CODES``.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import WRITE_KEY, RunningCollector, running_collector
from hypothesis import event, given, settings
from hypothesis import strategies as st

from journeykit.collector.answers import BatchAnswer
from journeykit.collector.errors import ERROR_CODES
from journeykit.sdk.protocol import MESSAGE_TYPES

SCALE = int(os.environ.get("JOURNEYKIT_FUZZ_SCALE", "1"))
ALLOWED = {200, 400, 401, 413, 415, 429}
LIMIT = 16 * 1024  # a small request limit, so 413 is reachable with small examples


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    with running_collector(data, fsync="never", max_request_bytes=LIMIT) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningCollector) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def check_answer(response: httpx.Response) -> None:
    """The contract every answer of an ingestion endpoint keeps, whatever was sent."""
    assert response.status_code in ALLOWED, (response.status_code, response.text)
    event(f"status {response.status_code}")  # shown by --hypothesis-show-statistics
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if response.status_code == 200:
        BatchAnswer.model_validate(body)
        return
    assert body["ok"] is False, body
    assert set(body) == {"ok", "error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] in ERROR_CODES[response.status_code], body
    assert isinstance(body["error"]["message"], str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from([*MESSAGE_TYPES, "", "TRACK", "decide"]) | st.text(max_size=6),
        "userId": json_values,
        "anonymousId": json_values,
        "messageId": json_values,
        "event": json_values,
        "properties": json_values,
        "context": json_values,
        "timestamp": st.sampled_from(["2024-05-01T12:00:00Z", "yesterday", "", "9999-99-99"])
        | json_values,
        "traits": json_values,
        "writeKey": st.just(WRITE_KEY) | st.text(max_size=10),
    },
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "batch": st.lists(event_like, max_size=5) | json_values,
        "context": json_values,
        "sentAt": st.sampled_from(["2024-05-01T12:00:00Z", "nope"]) | json_values,
        "writeKey": st.just(WRITE_KEY) | st.text(max_size=10),
    },
) | event_like.map(dict)
bodies = st.one_of(
    st.binary(max_size=512),
    documents.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"\x00" * 64, b"{" * 5000, b"[" * 5000 + b"]" * 5000, b"x" * (LIMIT + 1)]),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "TEXT/PLAIN;charset=latin-1",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ]
) | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
header_names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,15}\Z").filter(
    lambda n: (
        n.lower()
        not in {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade"}
    )
)
# Any byte a header value may carry on the wire: visible ASCII, space, tab, and obs-text.
header_values = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip()
)
credentials = st.sampled_from(
    [
        None,
        "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
        "Basic " + base64.b64encode(b"wrong-key:").decode(),
        "Basic !!!not base64",
        "Basic " + base64.b64encode(b"\xff\xfe:").decode(),
        f"Bearer {WRITE_KEY}",
        "Basic",
        "",
    ]
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any], bytes]:
    path = draw(st.sampled_from(["/v1/batch", *(f"/v1/{t}" for t in MESSAGE_TYPES)]))
    body = draw(bodies)
    headers: dict[str, Any] = dict(draw(st.dictionaries(header_names, header_values, max_size=4)))
    encoding = draw(st.sampled_from([None, "gzip", "deflate", "identity", "br", "gzip, gzip"]))
    if encoding is not None:
        headers["Content-Encoding"] = encoding
        if draw(st.booleans()):  # encoded for real, or a lie about the encoding
            body = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    content_type = draw(content_types).strip()  # h11 refuses surrounding blanks itself
    if content_type or draw(st.booleans()):
        headers["Content-Type"] = content_type
    authorization = draw(credentials)
    if authorization is not None:
        headers["Authorization"] = authorization
    return path, headers, body


@settings(max_examples=250 * SCALE)
@given(request=requests())
def test_any_request_gets_a_documented_json_answer(
    client: httpx.Client, request: tuple[str, dict[str, Any], bytes]
) -> None:
    path, headers, body = request
    check_answer(client.post(path, content=body, headers=headers))


@settings(max_examples=40 * SCALE)
@given(size=st.integers(min_value=LIMIT + 1, max_value=20 * LIMIT), ratio=st.integers(1, 3))
def test_gzip_bombs_and_large_bodies_are_413(client: httpx.Client, size: int, ratio: int) -> None:
    # Highly compressible: a small body on the wire that inflates past the limit.
    inflated = b'{"batch": [' + b" " * size + b"]}"
    for headers, body in (
        ({"Content-Encoding": "gzip"}, gzip.compress(inflated, ratio * 3)),
        ({}, inflated),
    ):
        headers = {**headers, "Content-Type": "application/json", "Authorization": _auth()}
        response = client.post("/v1/batch", content=body, headers=headers)
        check_answer(response)
        assert response.status_code == 413


def _auth() -> str:
    return "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


def test_the_server_survived(server: RunningCollector, client: httpx.Client) -> None:
    """After the fuzzing above, the same server still stores a plain event."""
    body = {"batch": [{"type": "track", "userId": "after-fuzz", "event": "Still Here"}]}
    response = client.post("/v1/batch", json=body, headers={"Authorization": _auth()})
    assert response.json()["accepted"] == 1
    assert any(e.get("userId") == "after-fuzz" for e in server.events)
    assert not list(Path(server.data_dir).glob("torn/**/*.ndjson"))
