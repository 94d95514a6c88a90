"""``GET /v1/decisions/{subject}``: one subject's personalization decision, for a write key.

The subject is a ``userId`` or ``anonymousId`` as the client sends it (URL-encoded). The answer
is a :class:`~journeykit.sdk._decision.Decision`: ``personalization`` is ``granted`` with segments,
stage, next best action and recommendations; ``not_consented`` (empty) when the collector's consent
record does not allow personalization or the subject is suppressed; ``unavailable`` (empty) while
the profile store cannot be reached. Rate limits count one event per request.

Deciding reads the profile store, which may wait (a Redis round trip, a flush holding the
SQLite store), so it runs off the event loop; but handing one call to a worker thread and back
costs about 90 µs of CPU on a small VM (two thread wake-ups, the loop's self-pipe), a third of
a decision. :class:`DecisionBatches` therefore hands over, in one go, every request that arrived
while the previous hand-over was running: one round trip between the threads per batch, not
per request, and under load a batch holds many requests. A lone request still starts at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeykit.collector.errors import HttpError
from journeykit.collector.suppression import InvalidSubject, check_subject
from journeykit.sdk._decision import Decision

if TYPE_CHECKING:
    from journeykit.collector.app import CollectorCore

__all__ = ["DecisionBatches", "decision_routes"]

_Waiting = list[tuple[str, "asyncio.Future[Decision]"]]


class DecisionBatches:
    """Runs ``decide(subject)`` in the loop's default executor, a batch of requests per call.

    At most ``concurrency`` batches run at once; requests arriving meanwhile wait for the next
    batch (so under load a request waits at most for one batch before its own starts). An
    exception of one decision fails that request only. Bound to the event loop that first
    uses it.
    """

    def __init__(self, decide: Callable[[str], Decision], concurrency: int = 1) -> None:
        self._decide = decide
        self._concurrency = concurrency
        self._waiting: _Waiting = []
        self._running = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    async def decide(self, subject: str) -> Decision:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        future: asyncio.Future[Decision] = loop.create_future()
        self._waiting.append((subject, future))
        if self._running < self._concurrency:
            self._start(loop)
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._waiting = self._waiting, []
        self._running += 1
        done = loop.run_in_executor(None, self._run, batch)
        done.add_done_callback(lambda d: self._finish(loop, batch, d))

    def _run(self, batch: _Waiting) -> list[Decision | Exception]:
        out: list[Decision | Exception] = []
        for subject, _ in batch:
            try:
                out.append(self._decide(subject))
            except Exception as exc:  # noqa: BLE001 - handed to that request's handler
                out.append(exc)
        return out

    def _finish(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: _Waiting,
        done: asyncio.Future[list[Decision | Exception]],
    ) -> None:
        self._running -= 1
        results: list[Decision | Exception]
        if done.cancelled():  # the executor is shutting down
            results = [RuntimeError("the decision was cancelled")] * len(batch)
        elif (error := done.exception()) is not None:
            results = [error if isinstance(error, Exception) else RuntimeError(error)] * len(batch)
        else:
            results = done.result()
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the client went away and the request was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        if self._waiting and self._running < self._concurrency:
            self._start(loop)


def _batches(request: Request, collector: CollectorCore) -> DecisionBatches:
    state = request.app.state
    batches: DecisionBatches | None = getattr(state, "decision_batches", None)
    loop = asyncio.get_running_loop()
    if batches is None or batches.loop not in (None, loop):
        personalizer = collector.personalizer
        assert personalizer is not None
        batches = state.decision_batches = DecisionBatches(personalizer.one)
    return batches


async def get_decision(request: Request) -> Response:
    collector: CollectorCore = request.app.state.collector
    collector.authenticate(request, events=1)
    subject: str = request.path_params["subject"]
    try:
        check_subject(subject)
    except InvalidSubject as exc:
        raise HttpError(400, "invalid_subject", str(exc)) from None
    if collector.personalizer is None:
        raise HttpError(404, "decisions_disabled", "this collector keeps no profiles")
    decision = await _batches(request, collector).decide(subject)
    body: dict[str, Any] = decision.model_dump(mode="json")
    return Response(orjson.dumps(body), media_type="application/json")


def decision_routes() -> list[Route]:
    return [Route("/v1/decisions/{subject:path}", get_decision, methods=["GET"])]
