"""The floor for bench/collector_throughput.py: an endpoint that only appends bodies to a file.

Served by the same uvicorn settings as the collector, so the difference between the two is
what the collector's own work costs. ``FLOOR_FILE`` names the file; ``FLOOR_FSYNC=1`` forces an
fsync per request, as the collector's ``fsync=always`` does (without its group commit).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_fd = os.open(os.environ["FLOOR_FILE"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
_fsync = os.environ.get("FLOOR_FSYNC") == "1"


async def batch(request: Request) -> Response:
    body = await request.body()
    os.write(_fd, body + b"\n")
    if _fsync:
        os.fsync(_fd)
    return Response(b'{"ok":true}', media_type="application/json")


app = Starlette(routes=[Route("/v1/batch", batch, methods=["POST"])])
