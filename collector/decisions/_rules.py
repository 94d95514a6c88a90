"""The rules file: segments, journey stages, next best actions and experiments, in TOML.

TOML because it is in the standard library (``tomllib``: no dependency), has comments (the
reasoning behind a threshold belongs beside it), has no implicit typing surprises (YAML's
``no`` -> ``False``) and reads like the INI files operators already edit. The file is validated
by pydantic; every problem is reported as ``file: <kind> '<id>': <field>: <message>``.
"""

from __future__ import annotations

import math
import string
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from journeykit.collector.decisions._bucketing import BUCKETS
from journeykit.collector.decisions._conditions import Condition
from journeykit.collector.decisions._traits import check_trait

__all__ = ["DEFAULT_RULES", "RuleSet", "RulesError", "load_rules", "parse_rules"]

DEFAULT_RULES = "default_rules.toml"

_ID = r"^[a-z][a-z0-9_]{0,63}$"
_STRICT = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
_KINDS = ("segment", "stage", "action", "experiment")


class CurrencyConfig(BaseModel):
    """Thresholds are in ``primary``; ``rates`` give 1 unit of a currency in ``primary``."""

    model_config = _STRICT

    primary: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    rates: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rates_valid(self) -> Self:
        for code, rate in self.rates.items():
            if len(code) != 3 or not code.isupper() or not 0 < rate < math.inf:
                raise ValueError(
                    f"rates.{code}: a 3-letter code with a finite rate above 0 is needed"
                )
        return self


class SegmentRule(BaseModel):
    model_config = _STRICT

    id: str = Field(pattern=_ID)
    description: str = ""
    when: Condition | None = None


class StageRule(SegmentRule):
    """Stages are tried in file order; the first whose condition holds is the stage."""


class Variant(BaseModel):
    model_config = _STRICT

    id: str = Field(pattern=_ID)
    weight: int = Field(ge=0, le=BUCKETS, description="Share in 1/10,000.")
    params: dict[str, Any] = Field(default_factory=dict)


class Experiment(BaseModel):
    model_config = _STRICT

    id: str = Field(pattern=_ID)
    key: str | None = Field(default=None, description="Hashed with the subject; default: id.")
    variants: list[Variant] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights(self) -> Self:
        ids = [v.id for v in self.variants]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"variants: ids must differ; given twice: {', '.join(twice)}")
        total = sum(v.weight for v in self.variants)
        if total != BUCKETS:
            raise ValueError(f"variants: weights sum to {total}, they must sum to {BUCKETS}")
        return self

    @property
    def hash_key(self) -> str:
        return self.key if self.key is not None else self.id


class ActionRule(BaseModel):
    model_config = _STRICT

    id: str = Field(pattern=_ID)
    action: str = Field(pattern=_ID)
    priority: int = Field(ge=0, le=1_000_000, description="The highest that fires wins.")
    when: Condition | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = Field(min_length=1, description="May name traits: {cart_items}.")
    experiment: str | None = None

    @model_validator(mode="after")
    def _reason_fields(self) -> Self:
        for _, name, spec, conversion in string.Formatter().parse(self.reason):
            if name is None:
                continue
            if spec or conversion:
                # Traits reach the reason as text (numbers already formatted), where a spec
                # like {revenue:.2f} or a conversion like {x!z} would fail at decision time.
                raise ValueError(
                    f"reason: {{{name}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}}: write a trait as {{{name}}}, without a "
                    "format spec or conversion (numbers are formatted for you)"
                )
            if not name.isidentifier():
                raise ValueError(
                    f"reason: {{{name}}}: reasons name scalar traits such as {{orders}}"
                )
            try:
                kind = check_trait(name)
            except ValueError as exc:
                raise ValueError(f"reason: {exc}") from None
            if kind == "time":
                raise ValueError(f"reason: {name!r} is a time; reasons take numbers and text")
        return self


class RuleSet(BaseModel):
    """A whole rules file."""

    model_config = _STRICT

    version: Literal[1] = 1
    currency: CurrencyConfig = Field(default_factory=CurrencyConfig)
    segment: list[SegmentRule] = Field(default_factory=list)
    stage: list[StageRule] = Field(default_factory=list)
    action: list[ActionRule] = Field(default_factory=list)
    experiment: list[Experiment] = Field(default_factory=list)


class RulesError(ValueError):
    """A rules file that cannot be used; ``problems`` lists each, naming file, rule and field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _rule_name(doc: Any, loc: tuple[int | str, ...]) -> tuple[str, tuple[int | str, ...]]:
    """``("segment 'x'", rest of loc)`` for a location inside a rule, else ``("", loc)``."""
    if len(loc) >= 2 and loc[0] in _KINDS and isinstance(loc[1], int):
        try:
            rule_id = doc[loc[0]][loc[1]].get("id", "?")
        except (KeyError, IndexError, TypeError, AttributeError):
            rule_id = "?"
        return f"{loc[0]} {rule_id!r} (#{loc[1] + 1})", loc[2:]
    return "", loc


def _field(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_rules(text: str, source: str) -> RuleSet:
    """Validate the TOML ``text``; ``source`` names the file in errors."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError([f"{source}: not valid TOML: {exc}"]) from None
    try:
        rules = RuleSet.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            rule, rest = _rule_name(doc, tuple(error["loc"]))
            where = f"{rule}: " if rule else ""
            message = error["msg"].removeprefix("Value error, ")
            # Whole-rule checks (model validators) start their message with the field they name.
            field = f"{_field(rest)}: " if rest else ""
            problems.append(f"{source}: {where}{field}{message}")
        raise RulesError(problems) from None
    problems = _cross_check(rules, source)
    if problems:
        raise RulesError(problems)
    return rules


def _cross_check(rules: RuleSet, source: str) -> list[str]:
    problems: list[str] = []
    for kind in _KINDS:
        seen: set[str] = set()
        for rule in getattr(rules, kind):
            if rule.id in seen:
                problems.append(f"{source}: {kind} {rule.id!r}: id: used twice")
            seen.add(rule.id)
    earlier: set[str] = set()
    every = {s.id for s in rules.segment}
    for seg in rules.segment:
        for ref in seg.when.segments() if seg.when else []:
            if ref not in earlier:
                why = "is defined later (refer only to earlier ones)" if ref in every else "unknown"
                problems.append(f"{source}: segment {seg.id!r}: when: segment {ref!r} {why}")
        earlier.add(seg.id)
    for kind in ("stage", "action"):
        for rule in getattr(rules, kind):
            for ref in rule.when.segments() if rule.when else []:
                if ref not in every:
                    problems.append(f"{source}: {kind} {rule.id!r}: when: unknown segment {ref!r}")
    experiments = {e.id for e in rules.experiment}
    for act in rules.action:
        if act.experiment is not None and act.experiment not in experiments:
            problems.append(
                f"{source}: action {act.id!r}: experiment: unknown experiment {act.experiment!r}"
            )
    return problems


def load_rules(path: Path | None) -> RuleSet:
    """The rules in ``path``, or the packaged default rules when ``path`` is ``None``."""
    if path is None:
        package = resources.files("journeykit.collector.decisions")
        return parse_rules((package / DEFAULT_RULES).read_text("utf-8"), DEFAULT_RULES)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise RulesError([f"{path}: cannot be read: {exc.strerror}"]) from None
    return parse_rules(text, str(path))
