"""The compiled rule predicates answer exactly as the conditions read, for any tree.

``compile_condition`` unrolls ``all``/``any`` and inlines the trait read into each operator for
speed; a plain interpreter of the same tree, written here, is the reference.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from journeykit.collector.decisions._conditions import Condition, compile_condition
from journeykit.collector.decisions._traits import Currency, Traits

_NOW = 1_800_000_000.0
_DAY = 86_400


def _reference(cond: Condition, traits: Traits, held: dict[str, bool]) -> bool:
    if cond.all is not None:
        return all(_reference(c, traits, held) for c in cond.all)
    if cond.any is not None:
        return any(_reference(c, traits, held) for c in cond.any)
    if cond.not_ is not None:
        return not _reference(cond.not_, traits, held)
    if cond.segment is not None:
        return held.get(cond.segment, False)
    value = traits.get(cond.trait or "")
    if cond.exists is not None:
        return (value is not None) is cond.exists
    if cond.within is not None:
        return value is not None and traits.now - value <= int(cond.within[:-1]) * _DAY
    if cond.not_within is not None:
        return value is None or traits.now - value > int(cond.not_within[:-1]) * _DAY
    if cond.eq is not None:
        return bool(value == cond.eq)
    if cond.ne is not None:
        return bool(value != cond.ne)
    if cond.in_ is not None:
        return value in cond.in_
    for op, test in (
        ("gt", lambda a, b: a > b),
        ("gte", lambda a, b: a >= b),
        ("lt", lambda a, b: a < b),
        ("lte", lambda a, b: a <= b),
    ):
        target = getattr(cond, op)
        if target is not None:
            return value is not None and bool(test(value, target))
    raise AssertionError(cond)


_numbers = st.integers(min_value=-2, max_value=6)
_leaf = st.one_of(
    st.builds(
        lambda trait, op, n: {"trait": trait, op: n},
        st.sampled_from(["orders", "product_views", "adds"]),
        st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
        _numbers,
    ),
    st.builds(
        lambda trait, ns: {"trait": trait, "in": ns},
        st.sampled_from(["orders", "adds"]),
        st.lists(_numbers, max_size=3),
    ),
    st.builds(
        lambda trait, b: {"trait": trait, "exists": b},
        st.sampled_from(["last_seen", "last_purchase"]),
        st.booleans(),
    ),
    st.builds(
        lambda op, days: {"trait": "last_seen", op: f"{days}d"},
        st.sampled_from(["within", "not_within"]),
        st.integers(min_value=1, max_value=9),
    ),
    st.builds(lambda name: {"segment": name}, st.sampled_from(["a", "b"])),
)
_trees = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.builds(lambda cs: {"all": cs}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda cs: {"any": cs}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda c: {"not": c}, inner),
    ),
    max_leaves=10,
)
_profiles = st.fixed_dictionaries(
    {},
    optional={
        "orders": _numbers,
        "views": _numbers,
        "adds": _numbers,
        "last_seen": st.integers(min_value=0, max_value=12).map(lambda d: int(_NOW) - d * _DAY),
        "last_purchase": st.just(int(_NOW) - _DAY),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    tree=_trees,
    profile=_profiles,
    held=st.dictionaries(st.sampled_from(["a", "b"]), st.booleans()),
)
def test_compiled_predicates_match_the_reading_of_the_tree(
    tree: dict[str, Any], profile: dict[str, Any], held: dict[str, bool]
) -> None:
    cond = Condition.model_validate(tree)
    money = Currency("EUR", {})
    expected = _reference(cond, Traits(profile, _NOW, money, None), held)
    got = compile_condition(cond)(Traits(profile, _NOW, money, None), held)
    assert bool(got) is expected
