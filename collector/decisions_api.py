"""``GET /v1/decisions/{subject}``: one subject's personalization decision, for a write key.

The subject is a ``userId`` or ``anonymousId`` as the client sends it (URL-encoded). The answer
is a :class:`~journeykit.sdk._decision.Decision`: ``personalization`` is ``granted`` with segments,
stage, next best action and recommendations; ``not_consented`` (empty) when the collector's consent
record does not allow personalization or the subject is suppressed; ``unavailable`` (empty) while
the profile store cannot be reached. Rate limits count one event per request.

Deciding reads the profile store, which may wait (a Redis round trip, a flush holding the
SQLite store), so it runs off the event loop; but handing one call to a worker thread and back
costs tens of µs of CPU on a small VM (two thread wake-ups, the loop's self-pipe), a tenth of
a decision. :class:`DecisionBatches` therefore hands over, in one go, every request that arrived
while the previous hand-over was running: one round trip between the threads per batch, not
per request, and under load a batch holds many requests. A lone request still starts at once.
A batch is decided by one ``Personalizer.many`` (one consent check, one store read: one Redis
round trip), with the same answers as one by one.

The answer is serialized straight to JSON bytes (:func:`decision_json`), byte for byte what
``orjson.dumps(decision.model_dump(mode="json"))`` gives, at a fraction of its cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
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

__all__ = ["DecisionBatches", "decision_json", "decision_routes"]

_Waiting = list[tuple[str, "asyncio.Future[Decision]"]]
DecideMany = Callable[[Sequence[str]], Mapping[str, Decision]]
_PLAIN = frozenset({str, int, float, bool, type(None)})


def decision_json(decision: Decision) -> bytes:
    """The decision as JSON: the bytes of ``orjson.dumps(decision.model_dump(mode="json"))``.

    Built from the fields directly (pydantic's ``model_dump`` costs more than the rest of the
    answer); action parameters other than JSON scalars take pydantic's path, which converts
    them (dates, tuples...).
    """
    action = decision.next_best_action
    nba: dict[str, Any] | None = None
    if action is not None:
        if not all(type(v) in _PLAIN for v in action.params.values()):
            return orjson.dumps(decision.model_dump(mode="json"))
        nba = {"action": action.action, "params": action.params, "reason": action.reason}
    return orjson.dumps(
        {
            "subject": decision.subject,
            "personalization": decision.personalization,
            "segments": decision.segments,
            "stage": decision.stage,
            "next_best_action": nba,
            "recommendations": [
                {"product_id": r.product_id, "score": r.score, "source": r.source}
                for r in decision.recommendations
            ],
            "rules_fired": decision.rules_fired,
        }
    )


class DecisionBatches:
    """Runs ``decide(subject)`` on worker threads of its own, a batch of requests per hand-over.

    At most ``concurrency`` batches run at once; requests arriving meanwhile wait for the next
    batch (so under load a request waits at most for one batch before its own starts). With
    ``decide_many``, a batch of several subjects is decided in one call (keyed by subject);
    if it raises, the batch is decided again one by one, so an exception of one decision
    fails that request only. Bound to the event loop that first uses it.

    The threads are started on first use and end after ``idle_seconds`` without work. A
    hand-over is a queue put and one ``call_soon_threadsafe`` back: about half the CPU of the
    loop's default executor (``run_in_executor`` adds a concurrent future, its chaining to an
    asyncio one, and the executor's semaphore and condition).
    """

    def __init__(
        self,
        decide: Callable[[str], Decision],
        concurrency: int = 1,
        decide_many: DecideMany | None = None,
        idle_seconds: float = 10.0,
    ) -> None:
        self._decide = decide
        self._decide_many = decide_many
        self._concurrency = concurrency
        self._idle_seconds = idle_seconds
        self._waiting: _Waiting = []
        self._running = 0
        self._jobs: queue.SimpleQueue[_Waiting] = queue.SimpleQueue()
        self._guard = threading.Lock()  # thread count against queued jobs
        self._threads = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    async def decide(self, subject: str) -> Decision:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        future: asyncio.Future[Decision] = loop.create_future()
        self._waiting.append((subject, future))
        if self._running < self._concurrency:
            self._start()
        return await future

    def _start(self) -> None:
        batch, self._waiting = self._waiting, []
        self._running += 1
        with self._guard:
            self._jobs.put(batch)
            # Each running batch has a thread: an idle one only ends with the queue empty.
            if self._threads < self._running:
                self._threads += 1
                threading.Thread(
                    target=self._work, name="journeykit-decisions", daemon=True
                ).start()

    def _work(self) -> None:
        loop = self.loop
        assert loop is not None
        while True:
            try:
                batch = self._jobs.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._guard:
                    if self._jobs.empty():
                        self._threads -= 1
                        return
                continue
            try:
                results = self._run(batch)
            except BaseException as exc:  # noqa: BLE001 - every request of the batch fails
                error = exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
                results = [error] * len(batch)
            # A closed loop (RuntimeError) has nobody waiting for these answers.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._finish, batch, results)

    def _run(self, batch: _Waiting) -> list[Decision | Exception]:
        if self._decide_many is not None and len(batch) > 1:
            subjects = [subject for subject, _ in batch]
            try:
                found = self._decide_many(subjects)
                return [found[subject] for subject in subjects]
            except Exception:  # noqa: BLE001, S110 - one by one below: each fails on its own
                pass
        out: list[Decision | Exception] = []
        for subject, _ in batch:
            try:
                out.append(self._decide(subject))
            except Exception as exc:  # noqa: BLE001 - handed to that request's handler
                out.append(exc)
        return out

    def _finish(self, batch: _Waiting, results: list[Decision | Exception]) -> None:
        self._running -= 1
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the client went away and the request was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        if self._waiting and self._running < self._concurrency:
            self._start()


def _batches(request: Request, collector: CollectorCore) -> DecisionBatches:
    state = request.app.state
    batches: DecisionBatches | None = getattr(state, "decision_batches", None)
    loop = asyncio.get_running_loop()
    if batches is None or batches.loop not in (None, loop):
        personalizer = collector.personalizer
        assert personalizer is not None
        batches = DecisionBatches(personalizer.one, decide_many=personalizer.many)
        state.decision_batches = batches
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
    return Response(decision_json(decision), media_type="application/json")


def decision_routes() -> list[Route]:
    return [Route("/v1/decisions/{subject:path}", get_decision, methods=["GET"])]
