"""Personalization decisions computed locally: profiles, rules, recommendations.

>>> from journeykit.collector.decisions import DecisionEngine, DecisionSettings
>>> engine = DecisionEngine.open(DecisionSettings(), data_dir)  # doctest: +SKIP
>>> engine.update(stored_events)  # doctest: +SKIP
>>> engine.decide("user-1", personalization_granted=True)  # doctest: +SKIP

See docs/decisions.md for the rules format and the default rules.
"""

from journeykit.collector.decisions._bucketing import bucket
from journeykit.collector.decisions._engine import DecisionEngine, UpdateResult, open_store
from journeykit.collector.decisions._rebuild import RebuildResult, rebuild
from journeykit.collector.decisions._rules import RulesError, RuleSet, load_rules, parse_rules
from journeykit.collector.decisions._settings import DecisionSettings
from journeykit.collector.decisions._store import ProfileStore, StoreUnavailable
from journeykit.sdk._decision import Decision, NextBestAction, Recommendation

__all__ = [
    "Decision",
    "DecisionEngine",
    "DecisionSettings",
    "NextBestAction",
    "ProfileStore",
    "RebuildResult",
    "Recommendation",
    "RuleSet",
    "RulesError",
    "StoreUnavailable",
    "UpdateResult",
    "bucket",
    "load_rules",
    "open_store",
    "parse_rules",
    "rebuild",
]
