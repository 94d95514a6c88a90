"""Delivering one batch: an HTTP POST with gzip, and retries that know when to stop.

Retry rule (Segment's, plus Retry-After): network errors, 408, 429 and 5xx are retried with
exponential backoff and full jitter, each wait capped at ``max_backoff`` unless the server's
``Retry-After`` asks for longer (itself capped at ``max_retry_after``); any other 4xx gives up
at once, because sending the same bytes again cannot succeed.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import math
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from journeykit.sdk._settings import ClientSettings
from journeykit.sdk._stats import DropReason
from journeykit.sdk._version import LIBRARY_NAME, VERSION

__all__ = [
    "ABORTED_DETAIL",
    "Aborted",
    "BatchOutcome",
    "Retryable",
    "Sender",
    "check",
    "encode_batch",
    "outcome_of",
    "request_headers",
    "retry_policy",
]

log = logging.getLogger("journeykit")

_MIN_WAIT = 0.05  # never hammer a struggling server with an immediate retry


class Retryable(Exception):
    """A failure worth another try: a network error, 408, 429 or 5xx."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Aborted(Exception):
    """Shutdown asked the retry loop to stop waiting."""


@dataclass(slots=True)
class BatchOutcome:
    """What became of one batch: counts by fate and the collector's per-event refusals."""

    delivered: bool
    failure: DropReason | None = None
    detail: str = ""
    rejected: dict[int, str] = field(default_factory=dict)  # batch index -> reason
    retry_after: float | None = None  # the server's Retry-After on a retryable failure


def _parse_retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):  # "nan" or "inf" parse as floats: no wait a clock can keep
        return None
    return min(max(seconds, 0.0), cap)


def _rejections(response: httpx.Response) -> dict[int, str]:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(body, dict) or not isinstance(body.get("rejected"), list):
        return {}
    out: dict[int, str] = {}
    for entry in body["rejected"]:
        if isinstance(entry, dict) and isinstance(entry.get("index"), int):
            errors = entry.get("errors") or []
            out[entry["index"]] = "; ".join(
                f"{e.get('path', '')}: {e.get('message', '')}"
                for e in errors
                if isinstance(e, dict)
            )
    return out


def request_headers(settings: ClientSettings) -> dict[str, str]:
    """Headers of every request: the write key as HTTP Basic user, JSON, our user agent."""
    token = base64.b64encode(f"{settings.write_key.get_secret_value()}:".encode()).decode()
    return {
        "Authorization": f"Basic {token}",
        "Content-Type": "application/json",
        "User-Agent": f"{LIBRARY_NAME}/{VERSION}",
    }


def encode_batch(payloads: list[bytes], gzip: bool) -> tuple[bytes, dict[str, str]]:
    """The request body for ``payloads`` (encoded messages), and its extra headers."""
    sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").encode()
    body = b'{"batch":[' + b",".join(payloads) + b'],"sentAt":"' + sent_at + b'"}'
    if not gzip:
        return body, {}
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush(), {"Content-Encoding": "gzip"}


def check(response: httpx.Response, settings: ClientSettings) -> httpx.Response:
    """Raise :class:`Retryable` for 408, 429 and 5xx; return any other response."""
    status = response.status_code
    if status == 408 or status == 429 or status >= 500:
        retry_after = _parse_retry_after(
            response.headers.get("Retry-After"), settings.max_retry_after
        )
        raise Retryable(f"HTTP {status}", retry_after)
    return response


def retry_policy(settings: ClientSettings, budget: float | None = None) -> dict[str, Any]:
    """tenacity arguments shared by :class:`Sender` and the asyncio sender (not ``sleep``).

    ``budget`` replaces ``retry_budget`` (a client with a spool gives up on memory sooner).
    """
    jitter = wait_random_exponential(multiplier=0.5, max=settings.max_backoff)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Retryable) and exc.retry_after is not None:
            return max(exc.retry_after, _MIN_WAIT)
        return max(jitter(state), _MIN_WAIT)

    return {
        "stop": stop_after_attempt(settings.max_retries + 1)
        | stop_before_delay(settings.retry_budget if budget is None else budget),
        "wait": wait,
        "retry": retry_if_exception_type(Retryable),
        "reraise": True,
    }


def outcome_of(response: httpx.Response, size: int) -> BatchOutcome:
    """What a final (not retryable) response means for a batch of ``size`` events."""
    if response.is_success:
        return BatchOutcome(True, rejected=_rejections(response))
    detail = f"HTTP {response.status_code}: {response.text[:200]}"
    log.error("journeykit: collector refused a batch of %d: %s", size, detail)
    return BatchOutcome(False, "http_error", detail)


ABORTED_DETAIL = "shutdown interrupted the retries"


class Sender:
    """Posts batches to ``{host}/v1/batch`` over one keep-alive connection pool."""

    def __init__(
        self,
        settings: ClientSettings,
        transport: httpx.BaseTransport | None,
        abort: threading.Event,
        on_retry: Callable[[], None],
        on_request: Callable[[], None],
        budget: float | None = None,
    ) -> None:
        self._settings = settings
        self._policy = retry_policy(settings, budget)  # built once, not per batch
        self._abort = abort
        self._on_retry = on_retry
        self._on_request = on_request
        self._http = httpx.Client(
            base_url=settings.host,
            transport=transport,
            timeout=settings.timeout,
            headers=request_headers(settings),
        )

    def close(self) -> None:
        self._http.close()

    def _sleep(self, seconds: float) -> None:
        self._on_retry()
        if self._abort.wait(seconds):
            raise Aborted

    def _post_once(self, payloads: list[bytes]) -> httpx.Response:
        body, headers = encode_batch(payloads, self._settings.gzip)
        self._on_request()
        try:
            response = self._http.post("/v1/batch", content=body, headers=headers)
        except httpx.TransportError as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        return check(response, self._settings)

    def send(self, payloads: list[bytes]) -> BatchOutcome:
        """Deliver one batch, retrying as the module docstring says; never raises."""
        retrying = Retrying(sleep=self._sleep, **self._policy)
        try:
            response = retrying(self._post_once, payloads)
        except Retryable as exc:
            return BatchOutcome(False, "retries_exhausted", str(exc), retry_after=exc.retry_after)
        except Aborted:
            return BatchOutcome(False, "shutdown", ABORTED_DETAIL)
        return outcome_of(response, len(payloads))

    def attempt(self, payloads: list[bytes]) -> BatchOutcome:
        """One try, no retries: the spool's probes, which the caller spaces out itself."""
        try:
            response = self._post_once(payloads)
        except Retryable as exc:
            return BatchOutcome(False, "retries_exhausted", str(exc), retry_after=exc.retry_after)
        return outcome_of(response, len(payloads))
