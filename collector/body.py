"""Reading a request body within limits, before anything is parsed.

The compressed size is bounded while the body streams in, and the decompressed size while it
inflates, so a gzip bomb costs at most ``limit`` bytes of memory and ends in 413.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

import anyio
from starlette.requests import ClientDisconnect

__all__ = ["BodyError", "inflate", "read_limited"]


class BodyError(Exception):
    """The body cannot be accepted; ``status`` and ``code`` say why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


_MAX_MEMBERS = 64
"""Gzip members in one body: each costs a copy of the rest, and a client needs a few at most."""


def _too_large(limit: int, what: str) -> BodyError:
    return BodyError(413, "payload_too_large", f"{what} is over the limit of {limit:,} bytes")


async def read_limited(
    chunks: AsyncIterator[bytes],
    content_length: str | None,
    limit: int,
    timeout: float | None = None,
) -> bytes:
    """Collect a request body, refusing one over ``limit`` bytes without reading it all.

    ``timeout`` bounds the whole read in seconds: a client that trickles its body (slowloris)
    gets 408 ``request_timeout`` instead of holding a connection for ever. ``None``: no bound.
    A client that hangs up mid-body ends in 499 ``client_closed_request``.
    """
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise BodyError(400, "bad_request", "Content-Length is not a number") from None
        if declared > limit:
            raise _too_large(limit, "request body")
    try:
        if _on_asyncio():  # asyncio's own deadline costs a third of anyio's cancel scope
            async with asyncio.timeout(timeout):
                return await _collect(chunks, limit)
        with anyio.fail_after(timeout):
            return await _collect(chunks, limit)
    except TimeoutError:
        message = f"the request body was not received within {timeout:g} s"
        raise BodyError(408, "request_timeout", message) from None
    except ClientDisconnect:
        # Nobody hears the answer; what it is for is the metrics (nginx's 499), where a client
        # hanging up must not pass for a collector failure (500, with a traceback logged).
        message = "the client closed the connection before the whole body arrived"
        raise BodyError(499, "client_closed_request", message) from None


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # another event loop, such as trio's through anyio
        return False
    return True


async def _collect(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, "request body")
        parts.append(chunk)
    return b"".join(parts)


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (identity, gzip or deflate) with the output capped at ``limit``."""
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        return body
    gzip = name in ("gzip", "x-gzip")
    if gzip:
        wbits = 16 + zlib.MAX_WBITS
    elif name == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise BodyError(415, "unsupported_encoding", f"Content-Encoding {name!r} is not supported")
    parts: list[bytes] = []
    size = 0
    rest = body
    for _ in range(_MAX_MEMBERS):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(rest, limit - size + 1)
        except zlib.error as exc:
            raise BodyError(400, "bad_encoding", f"the body is not valid {name}: {exc}") from None
        size += len(out)
        if size > limit or inflater.unconsumed_tail:
            raise _too_large(limit, "decompressed request body")
        if not inflater.eof:
            raise BodyError(400, "bad_encoding", f"the {name} body is truncated")
        parts.append(out)
        # A gzip body may be several members (RFC 1952: `cat a.gz b.gz`, a compressor that
        # starts one per flush), padded with zeros; anything else after the data is refused,
        # as reading only the first member would store part of the batch and say nothing.
        rest = inflater.unused_data.lstrip(b"\0") if gzip else inflater.unused_data
        if not rest:
            return b"".join(parts)
        if not gzip:
            raise BodyError(400, "bad_encoding", f"the {name} body has data after its end")
    message = f"the gzip body has over {_MAX_MEMBERS} members"
    raise BodyError(400, "bad_encoding", message)
