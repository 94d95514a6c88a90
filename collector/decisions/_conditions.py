"""Conditions over traits, as written in a rules file, and their compiled predicates.

A condition is exactly one of: ``{all = [...]}``, ``{any = [...]}``, ``{not = {...}}``,
``{segment = "id"}`` (an earlier segment holds), or ``{trait = "name", <op> = value}`` with
``<op>`` one of ``eq ne gt gte lt lte in exists within not_within``. ``within``/``not_within``
take a duration (``"30m"``, ``"24h"``, ``"7d"``) and a time trait: ``within`` holds when the
time is at most that long ago, ``not_within`` when it is older or never happened.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from journeykit.collector.decisions._traits import Traits, check_trait

__all__ = ["Condition", "Predicate", "compile_condition", "parse_duration"]

Predicate = Callable[[Traits, dict[str, bool]], bool]
Scalar = int | float | str | bool

_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "exists", "within", "not_within")
_ATTR = {op: "in_" if op == "in" else op for op in _COMPARISONS}  # `in` is a keyword


def parse_duration(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as '30m', '24h' or '7d'")
    return int(match[1]) * _UNIT[match[2]]


class Condition(BaseModel):
    """One node of a condition tree; exactly one shape per node (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(default=None, alias="not")
    segment: str | None = None
    trait: str | None = None
    eq: Scalar | None = None
    ne: Scalar | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    exists: bool | None = None
    within: str | None = None
    not_within: str | None = None

    @field_validator("trait")
    @classmethod
    def _known_trait(cls, name: str | None) -> str | None:
        if name is not None:
            check_trait(name)
        return name

    @field_validator("within", "not_within")
    @classmethod
    def _duration(cls, text: str | None) -> str | None:
        if text is not None:
            parse_duration(text)
        return text

    def _ops(self) -> list[str]:
        return [op for op in _COMPARISONS if getattr(self, _ATTR[op]) is not None]

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        shapes = [
            k for k in ("all", "any", "not_", "segment", "trait") if getattr(self, k) is not None
        ]
        ops = self._ops()
        if len(shapes) != 1:
            raise ValueError(
                "a condition needs exactly one of all, any, not, segment, trait; got "
                + (", ".join(s.rstrip("_") for s in shapes) or "none")
            )
        if shapes == ["trait"]:
            if len(ops) != 1:
                raise ValueError(
                    f"a trait condition needs exactly one of {', '.join(_COMPARISONS)}"
                )
            kind = check_trait(self.trait or "")
            if ops[0] in ("within", "not_within") and kind != "time":
                raise ValueError(f"{ops[0]} needs a time trait; {self.trait!r} is a {kind}")
            if ops[0] in ("gt", "gte", "lt", "lte") and kind != "number":
                raise ValueError(f"{ops[0]} needs a number trait; {self.trait!r} is a {kind}")
            if ops[0] in ("eq", "ne", "in"):
                self._values_fit(ops[0], kind)
        elif ops:
            raise ValueError(f"{', '.join(ops)} is only allowed beside trait")
        return self

    def _values_fit(self, op: str, kind: str) -> None:
        """An ``eq``, ``ne`` or ``in`` value of the trait's kind: another never matches."""
        value = getattr(self, _ATTR[op])
        for item in value if isinstance(value, list) else [value]:
            fits = {
                "number": isinstance(item, int | float) and not isinstance(item, bool),
                "text": isinstance(item, str),
                "bool": isinstance(item, bool),
            }.get(kind, True)
            if not fits:
                raise ValueError(f"{op}: {item!r} can never equal {self.trait!r}, a {kind} trait")

    def segments(self) -> list[str]:
        """Every segment id this condition refers to."""
        out = [self.segment] if self.segment is not None else []
        for child in (self.all or []) + (self.any or []) + ([self.not_] if self.not_ else []):
            out.extend(child.segments())
        return out


def compile_condition(cond: Condition | None) -> Predicate:
    """A fast predicate for ``cond``; ``None`` (no ``when``) always holds."""
    if cond is None:
        return lambda t, s: True
    if cond.all is not None:
        return _all([compile_condition(c) for c in cond.all])
    if cond.any is not None:
        return _any([compile_condition(c) for c in cond.any])
    if cond.not_ is not None:
        inner = compile_condition(cond.not_)
        return lambda t, s: not inner(t, s)
    if cond.segment is not None:
        seg = cond.segment
        return lambda t, s: s.get(seg, False)
    return _compile_leaf(cond)


def _compile_leaf(cond: Condition) -> Predicate:
    name = cond.trait or ""
    op = cond._ops()[0]
    if op == "within" or op == "not_within":
        span = parse_duration(cond.within or cond.not_within or "")
        if op == "within":
            return lambda t, s: (v := t.get(name)) is not None and t.now - v <= span
        return lambda t, s: (v := t.get(name)) is None or t.now - v > span
    if op == "exists":
        want = bool(cond.exists)
        return lambda t, s: (t.get(name) is not None) is want
    target: Any = getattr(cond, _ATTR[op])
    # One closure per operator, the trait read inlined: these run for every rule of every
    # decision (up to inline_decisions per batch), and a call less per leaf is ~10% of it.
    tests: dict[str, Predicate] = {
        "eq": lambda t, s: t.get(name) == target,
        "ne": lambda t, s: t.get(name) != target,
        "gt": lambda t, s: (v := t.get(name)) is not None and v > target,
        "gte": lambda t, s: (v := t.get(name)) is not None and v >= target,
        "lt": lambda t, s: (v := t.get(name)) is not None and v < target,
        "lte": lambda t, s: (v := t.get(name)) is not None and v <= target,
        "in": lambda t, s: t.get(name) in target,
    }
    return tests[op]


def _all(parts: list[Predicate]) -> Predicate:
    # Unrolled for the usual short lists: a generator in all() costs more than the tests.
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda t, s: bool(first(t, s)) and bool(second(t, s))

    def every(t: Traits, s: dict[str, bool]) -> bool:
        for part in parts:  # noqa: SIM110 - a plain loop, no generator per call
            if not part(t, s):
                return False
        return True

    return every


def _any(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda t, s: bool(first(t, s)) or bool(second(t, s))

    def some(t: Traits, s: dict[str, bool]) -> bool:
        for part in parts:  # noqa: SIM110 - a plain loop, no generator per call
            if part(t, s):
                return True
        return False

    return some
