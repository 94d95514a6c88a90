"""The decision engine: the one object the collector holds, called once per request.

``update(events)`` queues a request's stored events (write-behind, see ``_writeback``): they
reach the store within ``flush_interval_seconds``, in one transaction per flush, while this
process's own decisions already reflect them. ``decide``/``decide_many`` answer from the stored
profiles with the queue folded in. A store outage never raises into ingestion: queued events
wait (up to ``pending_limit``, beyond which they are counted as skipped, reason
``store_unavailable``) and decisions say ``unavailable`` until the store answers again; the
store is retried at most every ``retry_unavailable_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from journeykit.collector.decisions._evaluate import CompiledRules
from journeykit.collector.decisions._profile import Profile, new_profile
from journeykit.collector.decisions._recommend import query_for, rank
from journeykit.collector.decisions._rfm import CutPoints, next_check, refresh_due
from journeykit.collector.decisions._rules import RuleSet, load_rules
from journeykit.collector.decisions._settings import DecisionSettings
from journeykit.collector.decisions._store import Doc, ItemLists, ProfileStore, StoreUnavailable
from journeykit.collector.decisions._traits import Traits
from journeykit.collector.decisions._writeback import Health, Suppressed, WriteBehind
from journeykit.sdk._decision import Decision

__all__ = ["DecisionEngine", "UpdateResult"]

PROFILES_FILE = Path("profiles") / "profiles.sqlite3"


@dataclass(slots=True)
class UpdateResult:
    """What one ``update`` did; ``skipped`` counts events by reason (nothing lost silently)."""

    applied: int = 0
    merged: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def open_store(settings: DecisionSettings, data_dir: Path) -> ProfileStore:
    """The configured backend; Redis needs the ``redis`` extra."""
    if settings.backend == "redis":
        try:
            from journeykit.collector.decisions._redis import RedisStore
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                'the Redis profile store needs redis-py: pip install "journeykit[redis]"'
            ) from exc
        assert settings.redis_url is not None
        return RedisStore(
            settings.redis_url.get_secret_value(),
            settings.redis_prefix,
            settings.redis_timeout_seconds,
        )
    from journeykit.collector.decisions._sqlite import SqliteStore

    return SqliteStore(
        data_dir / PROFILES_FILE, settings.sqlite_busy_timeout_seconds, settings.item_cache_entries
    )


class DecisionEngine:
    """Profiles in, decisions out; thread-safe (stores serialize what must be serialized)."""

    def __init__(
        self,
        store: ProfileStore,
        rules: RuleSet,
        settings: DecisionSettings | None = None,
        clock: Callable[[], float] = time.time,
        suppressed: Suppressed | None = None,
    ) -> None:
        self.settings = settings or DecisionSettings()
        self.rules = CompiledRules(rules)
        self._store = store
        self._clock = clock
        self._health = Health(self.settings.retry_unavailable_seconds)
        self._queue = WriteBehind(
            store, self.settings, self.rules.currency, clock, self._health, suppressed
        )
        # RFM cut points change only when recomputed: cache them until the next check
        # (``_rfm.next_check``) instead of reading them for every decision.
        self._cuts: CutPoints | None = None
        self._cuts_until = -float("inf")
        self.stats = self._health.stats
        #: ``{asked id: [the profile's owner, asked id]} -> {asked id: granted}``: consent of
        #: the person a profile reached through an alias belongs to (see ``_decide``). Set by
        #: the collector; without it the caller's ``granted`` stands.
        self.owner_consent: Callable[[Mapping[str, list[str]]], Mapping[str, bool]] | None = None

    @classmethod
    def open(
        cls,
        settings: DecisionSettings,
        data_dir: Path,
        clock: Callable[[], float] = time.time,
        suppressed: Suppressed | None = None,
    ) -> DecisionEngine:
        """The engine with the configured store and rules (raises ``RulesError`` on bad rules).

        ``suppressed(ids)`` returns those of ``ids`` whose queued events must not be written
        (the collector passes its suppression list): a flush leaves their events out.
        """
        rules = load_rules(settings.rules_file)
        return cls(open_store(settings, data_dir), rules, settings, clock, suppressed)

    def close(self) -> None:
        """Write what is queued (see ``flush``), stop the background flush, close the store."""
        try:
            self._queue.close()
        finally:
            self._store.close()

    def flush(self) -> bool:
        """Write every queued update and item statistic now; False if the store is down."""
        return self._queue.flush(stats=True)

    @property
    def local_store(self) -> bool:
        """Whether the store reads local files only (SQLite), no network round trip."""
        return self._store.local

    @property
    def pending(self) -> int:
        """Events queued and not yet written to the store."""
        return self._queue.queued

    @property
    def available(self) -> bool:
        """False while the store is considered down (after a failure, until the retry time)."""
        return self._health.available

    def take_flush_seconds(self) -> list[float]:
        """How long each flush since the last call took (fold and write), oldest first.

        A flush of a full queue runs in the ``update`` call that filled it: on the collector,
        a pause of its event loop. At most the latest 4,096 are kept between calls.
        """
        return self._health.take_flush_seconds()

    def update(self, events: Sequence[Mapping[str, Any]]) -> UpdateResult:
        """Queue stored events for their profiles (cheap; written by the next flush).

        ``applied`` counts events queued, ``merged`` identity links between ids not linked in
        the queue yet, ``skipped`` events left out by reason (``no_subject``, and
        ``store_unavailable`` once ``pending_limit`` events wait for a store that is down).
        The events are kept by reference until flushed: do not change them afterwards.
        """
        result = UpdateResult()
        if not events:
            return result
        queued, merged, skipped = self._queue.queue(events)
        result.applied, result.merged, result.skipped = queued, merged, dict(skipped)
        self.stats["events_queued"] += queued
        for reason, n in skipped.items():
            self.stats[f"events_skipped_{reason}"] += n
        return result

    def decide(self, subject: str, personalization_granted: bool | None = None) -> Decision:
        """One subject's decision; ``None`` reads consent from the profile's own record."""
        granted = None if personalization_granted is None else {subject: personalization_granted}
        return self.decide_many([subject], granted)[subject]

    def decide_many(
        self, subjects: Collection[str], granted: Mapping[str, bool] | None = None
    ) -> dict[str, Decision]:
        """Decisions keyed by subject; ``granted`` gives personalization consent per subject.

        Subjects missing from ``granted`` (or all, when it is ``None``) are judged by the
        consent recorded in their profile (from "Consent Updated" events). Only granted
        subjects' profiles are evaluated.
        """
        wanted = list(dict.fromkeys(subjects))
        out: dict[str, Decision] = {}
        if not self.available:
            return {s: Decision.empty(s, "unavailable") for s in wanted}
        try:
            out = self._decide(wanted, granted or {})
        except StoreUnavailable as exc:
            self._health.failed(exc)
            return {s: Decision.empty(s, "unavailable") for s in wanted}
        return out

    def _decide(self, wanted: list[str], granted: Mapping[str, bool]) -> dict[str, Decision]:
        now = self._clock()
        asked = [s for s in wanted if granted.get(s, True)]
        k = self.settings.recommendations
        owners: dict[str, str] = {}
        profiles, lists = self._read_profiles(asked, now, k, owners) if asked else ({}, {})
        granted = self._owners_consent(granted, owners)
        out: dict[str, Decision] = {}
        chosen: list[tuple[str, Profile]] = []
        for subject in wanted:
            profile = profiles.get(subject)
            consent = granted.get(subject)
            if consent is None:
                consent = profile is not None and profile.get("consent") is True
            if not consent:
                out[subject] = Decision.empty(subject, "not_consented")
                self.stats["decisions_not_consented"] += 1
            else:
                # Unknown yet: a visitor who has just arrived (cold-start recommendations).
                chosen.append((subject, profile or new_profile(int(now))))
        if not chosen:
            return out
        cuts = self._cut_points(now)
        found = self._store.candidates([query_for(p, k) for _, p in chosen], lists) if k else []
        for index, (subject, profile) in enumerate(chosen):
            traits = Traits(profile, now, self.rules.currency, cuts)
            # Bucketed on the profile's owner: a device id after login and the user's own id
            # are one person, who sees one variant.
            outcome = self.rules.evaluate(traits, owners.get(subject, subject))
            recs = rank(profile, found[index], k) if k else []
            out[subject] = Decision(
                subject=subject,
                personalization="granted",
                segments=outcome.segments,
                stage=outcome.stage,
                next_best_action=outcome.action,
                recommendations=recs,
                rules_fired=outcome.fired,
            )
            self.stats["decisions_granted"] += 1
        return out

    def profile(self, subject: str) -> Profile | None:
        """The profile of ``subject`` as decisions see it (stored plus queued; aliases followed).

        For an access request; ``None`` when nothing is known of the subject.
        """
        return self._profiles([subject], self._clock()).get(subject)

    def _owners_consent(
        self, granted: Mapping[str, bool], owners: Mapping[str, str]
    ) -> Mapping[str, bool]:
        """``granted`` with the consent of each aliased profile's owner in force.

        A device id merged into a user's profile at login answers with that user's profile,
        so with that user's consent too: a user who withdrew personalization must not be
        personalized through the device id, and one who never chose falls back on the
        device's choice (the consent store's order: user first, then device).
        """
        check = self.owner_consent
        aliased = {s: [owner, s] for s, owner in owners.items() if owner != s and s in granted}
        if check is None or not aliased:
            return granted
        return {**granted, **check(aliased)}

    def _profiles(self, subjects: list[str], now: float) -> dict[str, Profile]:
        """Profiles by the asked id, following aliases (an anonymous id after login)."""
        return self._read_profiles(subjects, now, 0)[0]

    def _read_profiles(
        self, subjects: list[str], now: float, k: int, owners: dict[str, str] | None = None
    ) -> tuple[dict[str, Profile], ItemLists]:
        """:meth:`_profiles`, and the item lists prefetched for ``k`` recommendations.

        ``owners`` receives, for each subject with a profile, the id that profile is stored
        under (the subject itself, or the user its aliases lead to).
        """
        docs, lists = self._queue.profiles(subjects, now, k)

        def resolve(subject: str) -> tuple[str, Doc | None]:
            key, doc = subject, docs.get(subject)
            for _ in range(4):
                if doc is None or "alias" not in doc:
                    break
                key = doc["alias"]
                doc = docs.get(key)
            return key, None if doc is None or "alias" in doc else doc

        found: dict[str, Profile] = {}
        for subject in subjects:
            key, doc = resolve(subject)
            if doc is not None:
                found[subject] = doc
                if owners is not None:
                    owners[subject] = key
        return found, lists

    def _cut_points(self, now: float) -> CutPoints | None:
        if now >= self._cuts_until:
            self._check_cut_points(now, force=False)
        cuts = self._cuts
        if cuts is None or cuts.population < self.settings.rfm_min_customers:
            return None
        return cuts

    def _check_cut_points(self, now: float, force: bool) -> None:
        """Read the shared cut points; recompute them when due (see ``_rfm.refresh_due``).

        Runs at most once per ``rfm_young_refresh_seconds`` (the cache below), never per
        event or decision: one key read, a customer count while the cut points are between
        ``rfm_young_refresh_seconds`` and ``rfm_refresh_seconds`` old, and the recompute
        (O(1) queries on the ordered indexes) when due.
        """
        s, store = self.settings, self._store
        young = min(s.rfm_young_refresh_seconds, s.rfm_refresh_seconds)
        cuts = store.cut_points()
        if force or refresh_due(
            cuts, now, s.rfm_refresh_seconds, young, s.rfm_min_customers, store.customer_count
        ):
            # The store recomputes only cut points older than ``young`` (0: always), under its
            # lock: of processes due at the same check, the first recomputes, the others read.
            cuts = store.refresh_cut_points(now, 0.0 if force else young)
        self._cuts = cuts
        self._cuts_until = next_check(cuts, now, s.rfm_refresh_seconds, young)

    def refresh_rfm(self) -> None:
        """Recompute the RFM cut points now (they also refresh every ``rfm_refresh_seconds``)."""
        self._check_cut_points(self._clock(), force=True)

    def forget(self, subjects: Collection[str]) -> int:
        """Erase these subjects' profiles and queued events; returns how many existed.

        Co-occurrence and popularity counts are aggregates over everyone and are kept.
        """
        return self._queue.forget(subjects)
