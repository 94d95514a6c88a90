"""The last steps of a request: update profiles from the stored events, then decide.

Stored events (after the consent gate and pseudonymization) are queued for the decision engine,
which folds them into profiles in the background (write-behind, see docs/decisions.md). The
answer to a batch carries the decisions of its subjects, at most ``inline_decisions`` of them,
each computed only when the subject granted personalization under the collector's own consent
record (the same one the gate uses) and is not suppressed. ``GET /v1/decisions/{subject}``
answers one subject the same way.

A subject is the event's ``userId``, else its ``anonymousId``, as stored.

The engine's flush asks :meth:`Personalizer.suppressed` which ids are on the suppression list
and leaves their queued events out, so an erasure's deleted profile is not written back by a
worker that queued the subject's last events before the suppression.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from journeykit.collector.decisions import Decision, DecisionEngine, DecisionSettings
from journeykit.collector.privacy import PrivacyStep
from journeykit.collector.settings import CollectorSettings
from journeykit.collector.suppression import InvalidSubject

MAX_PSEUDONYMS = 65_536
"""Ids whose pseudonyms are kept for the flush's suppression check (then all dropped)."""

__all__ = ["EngineProfiles", "Personalizer", "decision_settings", "subject_of"]

log = logging.getLogger("journeykit.collector")


def subject_of(event: Mapping[str, Any]) -> str | None:
    """Whom an event is about: its user id, else its anonymous id."""
    for key in ("userId", "anonymousId"):
        value = event.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def decision_settings(settings: CollectorSettings) -> DecisionSettings:
    return settings.decision_options.for_collector(
        settings.decisions, settings.profile_store, settings.redis_url, settings.rules_file
    )


class Personalizer:
    """Feeds the decision engine and asks it for the decisions of one request."""

    def __init__(self, settings: CollectorSettings, privacy: PrivacyStep) -> None:
        self._privacy = privacy
        self._inline = settings.inline_decisions
        # An id's pseudonyms under every key: an HMAC each, asked at every flush for the same
        # visitors while the list is not empty.
        self._pseudonyms: dict[str, tuple[str, ...]] = {}
        self.engine = DecisionEngine.open(
            decision_settings(settings), settings.data_dir, suppressed=self.suppressed
        )
        self.engine.owner_consent = self._privacy.personalization_granted_many

    def suppressed(self, ids: Collection[str]) -> set[str]:
        """Those of ``ids`` on the suppression list (the engine's flush leaves them out).

        Called from the engine's flush (its background thread), once per flush for the ids
        of the queued events; the list is reloaded when another process changed it (at most
        every ``REFRESH_SECONDS``).
        """
        suppression = self._privacy.suppression
        if suppression is None:
            return set()
        suppression.refresh()
        if not len(suppression):
            return set()
        cache = self._pseudonyms
        out: set[str] = set()
        for subject in ids:
            pseudonyms = cache.get(subject)
            if pseudonyms is None:
                try:
                    pseudonyms = suppression.pseudonyms(subject)
                except InvalidSubject:
                    continue  # an id the list cannot hold (control characters, too long)
                if len(cache) >= MAX_PSEUDONYMS:
                    cache.clear()
                cache[subject] = pseudonyms
            if suppression.is_suppressed((), pseudonyms):  # every key's pseudonym is there
                out.add(subject)
        return out

    def update(self, stored: list[dict[str, Any]]) -> None:
        """Queue the stored events for their profiles (cheap; written by the engine's flush)."""
        if stored:
            self.engine.update(stored)

    def inline_ids(self, stored: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
        """The first ``inline_decisions`` subjects of the stored events, each with its ids.

        A subject's ids are itself and the anonymous ids its events carried: the consent
        check reads the records of all of them. Cheap (no store read): the loop runs it.
        """
        ids: dict[str, list[str]] = {}
        for event in stored:
            subject = subject_of(event)
            if subject is None:
                continue
            known = ids.get(subject)
            if known is None:
                if len(ids) >= self._inline:
                    continue
                known = ids[subject] = [subject]
            anonymous = event.get("anonymousId")
            if isinstance(anonymous, str) and anonymous and anonymous not in known:
                known.append(anonymous)
        return ids

    def for_ids(self, ids: Mapping[str, list[str]]) -> dict[str, Decision]:
        """Decisions of the subjects of :meth:`inline_ids`, keyed by subject."""
        if not ids:
            return {}
        granted = self._privacy.personalization_granted_many(ids)
        return self.engine.decide_many(list(ids), granted)

    def for_requests(self, requests: list[dict[str, list[str]]]) -> list[dict[str, Decision]]:
        """:meth:`for_ids` of each request's subjects, in order: the same answers, at once.

        One consent check and one ``decide_many`` (one store read, one Redis round trip) for
        every request whose subjects agree on their ids with the requests before it; a
        request naming a subject with other anonymous ids is decided on its own, as its
        consent check reads other records.
        """
        people: dict[str, list[str]] = {}
        alone: dict[int, dict[str, Decision]] = {}
        for index, ids in enumerate(requests):
            if all(people.get(subject, known) == known for subject, known in ids.items()):
                people.update(ids)
            else:
                alone[index] = self.for_ids(ids)
        decided = self.for_ids(people)
        return [
            alone[index] if index in alone else {subject: decided[subject] for subject in ids}
            for index, ids in enumerate(requests)
        ]

    def one(self, subject: str) -> Decision:
        """``GET /v1/decisions/{subject}``."""
        granted = self._privacy.personalization_granted([subject])
        return self.engine.decide(subject, personalization_granted=granted)

    def many(self, subjects: Sequence[str]) -> dict[str, Decision]:
        """:meth:`one` for each of ``subjects`` at once, keyed by subject: the same answers.

        One consent check for all of them and one ``decide_many`` (one store read, one Redis
        round trip): what a batch of ``GET /v1/decisions`` requests costs.
        """
        wanted = list(dict.fromkeys(subjects))
        granted = self._privacy.personalization_granted_many({s: [s] for s in wanted})
        return self.engine.decide_many(wanted, granted)

    def profile(self, subject: str) -> dict[str, Any] | None:
        """The stored profile of ``subject`` (an access request)."""
        return self.engine.profile(subject)

    def decision(self, subject: str) -> dict[str, Any] | None:
        """The decision in force for ``subject`` (an access request); None if not granted."""
        decision = self.one(subject)
        return decision.model_dump(mode="json") if decision.personalization == "granted" else None

    def forget(self, subjects: Iterable[str]) -> int:
        """Delete the profiles of ``subjects`` (an erasure request); how many there were."""
        return self.engine.forget(list(subjects))

    def close(self) -> None:
        self.engine.close()


class EngineProfiles:
    """The decision engine as a data-subject request sees it: one person's profile and decision.

    ``decision`` judges consent from the profile's own record of it, as the CLI has no consent
    store of its own; the collector's endpoint uses the consent store instead.
    """

    def __init__(self, engine: DecisionEngine) -> None:
        self.engine = engine

    def profile(self, subject: str) -> dict[str, Any] | None:
        return self.engine.profile(subject)

    def decision(self, subject: str) -> dict[str, Any] | None:
        decision = self.engine.decide(subject)
        return None if decision.personalization != "granted" else decision.model_dump(mode="json")

    def forget(self, subjects: Iterable[str]) -> int:
        return self.engine.forget(list(subjects))

    def close(self) -> None:
        self.engine.close()
