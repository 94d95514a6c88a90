"""Delivering one batch from asyncio: :class:`~journeykit.sdk._transport.Sender`'s twin.

Same request, same retry rule (``retry_policy``: which failures, how long to wait, when to give
up), with ``httpx.AsyncClient`` and tenacity's ``AsyncRetrying``; waits between tries are
``asyncio`` sleeps that shutdown can cut short.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from tenacity import AsyncRetrying

from journeykit.sdk._settings import ClientSettings
from journeykit.sdk._transport import (
    ABORTED_DETAIL,
    Aborted,
    BatchOutcome,
    Retryable,
    check,
    encode_batch,
    outcome_of,
    request_headers,
    retry_policy,
)

__all__ = ["AsyncSender"]


class AsyncSender:
    """Posts batches to ``{host}/v1/batch`` over one keep-alive connection pool, from asyncio."""

    def __init__(
        self,
        settings: ClientSettings,
        transport: httpx.AsyncBaseTransport | None,
        abort: asyncio.Event,
        on_retry: Callable[[], None],
        on_request: Callable[[], None],
        budget: float | None = None,
    ) -> None:
        self._settings = settings
        self._policy = retry_policy(settings, budget)  # built once, not per batch
        self._abort = abort
        self._on_retry = on_retry
        self._on_request = on_request
        self._http = httpx.AsyncClient(
            base_url=settings.host,
            transport=transport,
            timeout=settings.timeout,
            headers=request_headers(settings),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _sleep(self, seconds: float) -> None:
        self._on_retry()
        try:
            async with asyncio.timeout(seconds):
                await self._abort.wait()
        except TimeoutError:
            return
        raise Aborted

    async def _post_once(self, payloads: list[bytes]) -> httpx.Response:
        body, headers = encode_batch(payloads, self._settings.gzip)
        self._on_request()
        try:
            response = await self._http.post("/v1/batch", content=body, headers=headers)
        except httpx.TransportError as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        return check(response, self._settings)

    async def send(self, payloads: list[bytes]) -> BatchOutcome:
        """Deliver one batch with the sync sender's retry rule; never raises (but cancels)."""
        retrying = AsyncRetrying(sleep=self._sleep, **self._policy)
        try:
            response: httpx.Response = await retrying(self._post_once, payloads)
        except Retryable as exc:
            return BatchOutcome(False, "retries_exhausted", str(exc), retry_after=exc.retry_after)
        except Aborted:
            return BatchOutcome(False, "shutdown", ABORTED_DETAIL)
        return outcome_of(response, len(payloads))

    async def attempt(self, payloads: list[bytes]) -> BatchOutcome:
        """One try, no retries: the spool's probes, which the caller spaces out itself."""
        try:
            response = await self._post_once(payloads)
        except Retryable as exc:
            return BatchOutcome(False, "retries_exhausted", str(exc), retry_after=exc.retry_after)
        return outcome_of(response, len(payloads))
