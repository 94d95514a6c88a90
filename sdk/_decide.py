"""``client.decide(user_id)``: the collector's personalization decision, cached for a moment.

An app asks for a decision while it renders a page, so the call is bounded and cheap: answers
are kept for ``decision_ttl`` seconds (a page and the few that follow it reuse one), the request
has its own short timeout, and a collector that cannot answer (down, slow, or its profile store
unreachable) gives ``personalization="unavailable"`` instead of an exception, which the app
treats like "no personalization". Only ``granted`` answers are cached: an ``unavailable`` or a
``not_consented`` one (the person's consent, just given, may still be on its way to the
collector) is asked again on the next page.

The subject is looked up as the collector stores it: the ``userId`` (or ``anonymousId``) as
sent. Decisions exist only for people who granted the ``personalization`` purpose; the
collector answers ``not_consented`` for the others.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from journeykit.sdk._decision import Decision

__all__ = ["AsyncDecider", "Decider", "DecisionCache", "decision_path"]

log = logging.getLogger("journeykit")


def decision_path(subject: str) -> str:
    """The collector's path for ``subject``; ids may hold any character, so all are escaped."""
    return "/v1/decisions/" + quote(subject, safe="")


class DecisionCache:
    """A small LRU of decisions that expire after ``ttl`` seconds; thread-safe."""

    def __init__(self, ttl: float, max_entries: int) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._items: OrderedDict[str, tuple[float, Decision]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, subject: str) -> Decision | None:
        with self._lock:
            found = self._items.get(subject)
            if found is None:
                return None
            expires, decision = found
            if expires <= time.monotonic():
                del self._items[subject]
                return None
            self._items.move_to_end(subject)
            return decision

    def put(self, subject: str, decision: Decision) -> None:
        """Keep ``decision`` as the answer for ``subject`` (the id asked about) for ``ttl``."""
        # Only answers that agree with what the client knows are kept: the client asks only
        # when it believes personalization is allowed, so "not_consented" means the consent
        # it sent has not reached the collector yet, and the next page should ask again.
        if self._ttl <= 0:
            return
        if decision.personalization != "granted":
            # Not kept, and an older granted answer is no longer the latest word: a later
            # decide() must not bring it back (a withdrawal made on another device).
            self.forget(subject)
            return
        with self._lock:
            self._items[subject] = (time.monotonic() + self._ttl, decision)
            self._items.move_to_end(subject)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def forget(self, *subjects: str | None) -> None:
        """Drop the cached decisions of these ids (after the person's consent changed)."""
        with self._lock:
            for subject in subjects:
                if subject is not None:
                    self._items.pop(subject, None)

    def __len__(self) -> int:
        return len(self._items)


def _parse(subject: str, response: httpx.Response) -> Decision:
    if response.status_code != 200:
        log.warning(
            "journeykit: the collector answered %d to a decision request", response.status_code
        )
        return Decision.empty(subject, "unavailable")
    try:
        return Decision.model_validate_json(response.content)
    except ValidationError:
        log.warning("journeykit: the collector's decision did not parse; treated as unavailable")
        return Decision.empty(subject, "unavailable")


def _failed(subject: str, exc: Exception) -> Decision:
    if isinstance(exc, httpx.HTTPError | TimeoutError):
        log.warning("journeykit: decision request failed: %s", type(exc).__name__)
    else:  # e.g. shutdown() closed the connections under this call
        log.exception("journeykit: unexpected error asking for a decision")
    return Decision.empty(subject, "unavailable")


class Decider:
    """Fetches decisions over its own connection pool (the worker's is busy sending).

    ``timeout`` is httpx's: it bounds each step (connecting, each read and write).
    """

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        timeout: float,
        cache: DecisionCache,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )
        self.cache = cache

    def decide(self, subject: str, *, fresh: bool = False) -> Decision:
        """The cached decision, or the collector's; ``unavailable`` instead of any error."""
        if not fresh and (cached := self.cache.get(subject)) is not None:
            return cached
        try:
            decision = _parse(subject, self._http.get(decision_path(subject)))
        except Exception as exc:  # noqa: BLE001 - _failed logs it; never raise into a page
            decision = _failed(subject, exc)
        self.cache.put(subject, decision)
        return decision

    def close(self) -> None:
        self._http.close()


class AsyncDecider:
    """:class:`Decider` for ``AsyncClient``; ``timeout`` also bounds the whole request."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        timeout: float,
        cache: DecisionCache,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )
        self._timeout = timeout
        self.cache = cache

    async def decide(self, subject: str, *, fresh: bool = False) -> Decision:
        """The cached decision, or the collector's; ``unavailable`` instead of any error."""
        if not fresh and (cached := self.cache.get(subject)) is not None:
            return cached
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._http.get(decision_path(subject))
            decision = _parse(subject, response)
        except Exception as exc:  # noqa: BLE001 - _failed logs it; cancellation still propagates
            decision = _failed(subject, exc)
        self.cache.put(subject, decision)
        return decision

    async def aclose(self) -> None:
        await self._http.aclose()
