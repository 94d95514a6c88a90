"""``GET /v1/decisions/{subject}``: one subject's personalization decision, for a write key.

The subject is a ``userId`` or ``anonymousId`` as the client sends it (URL-encoded). The answer
is a :class:`~journeykit.sdk._decision.Decision`: ``personalization`` is ``granted`` with segments,
stage, next best action and recommendations; ``not_consented`` (empty) when the collector's consent
record does not allow personalization or the subject is suppressed; ``unavailable`` (empty) while
the profile store cannot be reached. Rate limits count one event per request.

Deciding reads the profile store. A local store's read (SQLite) is brief: the requests ready in
one pass of the event loop are decided together on it (:mod:`journeykit.collector._loop_batches`).
A remote store (Redis) may wait, so there it runs off the loop: :class:`DecisionBatches` hands
over, in one go, every request that arrived while the previous hand-over was running
(:mod:`journeykit.collector._handover` says why). Either way a batch is decided by one
``Personalizer.many`` (one consent check, one store read: one Redis round trip), with the same
answers as one by one.

The answer is serialized straight to JSON bytes (:func:`decision_json`), byte for byte what
``orjson.dumps(decision.model_dump(mode="json"))`` gives, at a fraction of its cost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeykit.collector._handover import Handover
from journeykit.collector._loop_batches import LoopBatches
from journeykit.collector.errors import HttpError
from journeykit.collector.suppression import InvalidSubject, check_subject
from journeykit.sdk._decision import Decision

if TYPE_CHECKING:
    from journeykit.collector.app import CollectorCore

__all__ = ["DecisionBatches", "decision_json", "decision_routes"]

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


class DecisionBatches(Handover[str, Decision]):
    """Decides GET requests' subjects on worker threads, a batch of requests per hand-over.

    See :class:`~journeykit.collector._handover.Handover`. With ``decide_many``, a batch of
    several subjects is decided in one call (keyed by subject); if it raises, the batch is
    decided again one by one, so an exception of one decision fails that request only.
    """

    def __init__(
        self,
        decide: Callable[[str], Decision],
        concurrency: int = 1,
        decide_many: DecideMany | None = None,
        idle_seconds: float = 10.0,
    ) -> None:
        super().__init__(
            decide,
            None if decide_many is None else _in_order(decide_many),
            concurrency=concurrency,
            idle_seconds=idle_seconds,
            name="journeykit-decisions",
        )

    async def decide(self, subject: str) -> Decision:
        return await self.run(subject)


def _batches(request: Request, collector: CollectorCore) -> DecisionBatches:
    state = request.app.state
    batches: DecisionBatches | None = getattr(state, "decision_batches", None)
    if batches is None or not batches.usable_here():
        personalizer = collector.personalizer
        assert personalizer is not None
        batches = DecisionBatches(personalizer.one, decide_many=personalizer.many)
        state.decision_batches = batches
    return batches


def _on_loop(request: Request, collector: CollectorCore) -> LoopBatches[str, Decision]:
    state = request.app.state
    batches: LoopBatches[str, Decision] | None = getattr(state, "loop_decisions", None)
    if batches is None:
        personalizer = collector.personalizer
        assert personalizer is not None
        batches = LoopBatches(personalizer.one, _in_order(personalizer.many))
        state.loop_decisions = batches
    return batches


def _in_order(decide_many: DecideMany) -> Callable[[list[str]], list[Decision]]:
    """``decide_many`` answering a batch's subjects in order, as a batch runner does."""

    def many(subjects: list[str]) -> list[Decision]:
        found = decide_many(subjects)
        return [found[subject] for subject in subjects]

    return many


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
    if collector.personalizer.engine.local_store:
        decision = await _on_loop(request, collector).run(subject)
    else:
        decision = await _batches(request, collector).decide(subject)
    return Response(decision_json(decision), media_type="application/json")


def decision_routes() -> list[Route]:
    return [Route("/v1/decisions/{subject:path}", get_decision, methods=["GET"])]
