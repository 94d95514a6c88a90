"""Floors for the HTTP benchmarks: endpoints that do the least their collector route must do.

Served by the same uvicorn settings as the collector, so the difference between the two is
what the collector's own work costs.

- ``POST /v1/batch`` (bench/collector_throughput.py) only appends bodies to a file.
  ``FLOOR_FILE`` names the file; ``FLOOR_FSYNC=1`` forces an fsync per request, as the
  collector's ``fsync=always`` does (without its group commit).
- ``GET /v1/decisions/{subject}`` (bench/decisions_http.py) answers a fixed JSON body of about
  1 KB, the size of a granted decision: no auth, no store, no serialization.
"""

from __future__ import annotations

import functools
import os

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_DECISION = orjson.dumps(
    {
        "subject": "user-00000",
        "personalization": "granted",
        "segments": ["value_low", "rfm_hibernating", "lapsed"],
        "stage": "purchase",
        "next_best_action": {
            "action": "reengagement",
            "params": {"channel": "email", "discount_pct": 15},
            "reason": "No order for 265 days after 1 order(s) worth 210.5 USD",
        },
        "recommendations": [
            {"product_id": f"p{1000 + i}", "score": 12.0 - i, "source": "co_occurrence"}
            for i in range(5)
        ],
        "rules_fired": [
            "segment:value_low",
            "segment:rfm_hibernating",
            "segment:lapsed",
            "stage:purchase",
            "action:winback_hibernating",
            "action:winback_lapsed",
        ],
        "padding": "x" * 300,
    }
)


_FSYNC = os.environ.get("FLOOR_FSYNC") == "1"


@functools.cache
def _fd() -> int:
    return os.open(os.environ["FLOOR_FILE"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


async def batch(request: Request) -> Response:
    body = await request.body()
    fd = _fd()
    os.write(fd, body + b"\n")
    if _FSYNC:
        os.fsync(fd)
    return Response(b'{"ok":true}', media_type="application/json")


async def decision(request: Request) -> Response:
    return Response(_DECISION, media_type="application/json")


app = Starlette(
    routes=[
        Route("/v1/batch", batch, methods=["POST"]),
        Route("/v1/decisions/{subject:path}", decision, methods=["GET"]),
        Route("/healthz", decision, methods=["GET"]),
    ]
)
