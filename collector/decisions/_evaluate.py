"""A rule set compiled to predicates, and its evaluation over one subject's traits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from journeykit.collector.decisions._bucketing import pick_variant
from journeykit.collector.decisions._conditions import Predicate, compile_condition
from journeykit.collector.decisions._rules import ActionRule, Experiment, RuleSet
from journeykit.collector.decisions._traits import Currency, Traits
from journeykit.sdk._decision import NextBestAction

__all__ = ["CompiledRules", "Outcome"]


@dataclass(frozen=True, slots=True)
class Outcome:
    segments: list[str]
    stage: str | None
    action: NextBestAction | None
    fired: list[str]


class _TraitView(dict[str, Any]):
    """``str.format_map`` source: trait values, numbers rounded for people."""

    def __init__(self, traits: Traits) -> None:
        super().__init__()
        self._traits = traits

    def __missing__(self, key: str) -> Any:
        value = self._traits.get(key)
        if isinstance(value, float) and math.isfinite(value):
            return f"{value:,.2f}".rstrip("0").rstrip(".")
        if value is None or value == "":
            return "n/a"  # e.g. no RFM score below rfm_min_customers: say so, not a blank
        return value


class CompiledRules:
    """Segments in file order, stages first-match, actions by priority (ties: file order)."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.currency = Currency(rules.currency.primary, dict(rules.currency.rates))
        self._segments = [(s.id, compile_condition(s.when)) for s in rules.segment]
        self._stages = [(s.id, compile_condition(s.when)) for s in rules.stage]
        ordered = sorted(enumerate(rules.action), key=lambda p: (-p[1].priority, p[0]))
        self._actions: list[tuple[ActionRule, Predicate]] = [
            (a, compile_condition(a.when)) for _, a in ordered
        ]
        self._experiments: dict[str, Experiment] = {e.id: e for e in rules.experiment}

    def evaluate(self, traits: Traits, subject: str) -> Outcome:
        held: dict[str, bool] = {}
        segments: list[str] = []
        fired: list[str] = []
        for seg_id, pred in self._segments:
            if pred(traits, held):
                held[seg_id] = True
                segments.append(seg_id)
                fired.append(f"segment:{seg_id}")
        stage = None
        for stage_id, pred in self._stages:
            if pred(traits, held):
                stage = stage_id
                fired.append(f"stage:{stage_id}")
                break
        chosen: NextBestAction | None = None
        for rule, pred in self._actions:
            if pred(traits, held):
                fired.append(f"action:{rule.id}")
                if chosen is None:
                    chosen = self._action(rule, traits, subject)
        return Outcome(segments, stage, chosen, fired)

    def _action(self, rule: ActionRule, traits: Traits, subject: str) -> NextBestAction:
        params = dict(rule.params)
        if rule.experiment is not None:
            exp = self._experiments[rule.experiment]
            variant = exp.variants[
                pick_variant([v.weight for v in exp.variants], exp.hash_key, subject)
            ]
            params.update(variant.params)
            params["experiment"] = exp.id
            params["variant"] = variant.id
        reason = rule.reason.format_map(_TraitView(traits))
        return NextBestAction(action=rule.action, params=params, reason=reason)
