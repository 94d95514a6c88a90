"""The rules file: the default rules load, and each bad file names file, rule and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from journeykit.collector.decisions import RulesError, load_rules, parse_rules

DEFAULT_IDS = {
    "segment": {
        "rfm_champions",
        "rfm_loyal",
        "rfm_at_risk",
        "rfm_hibernating",
        "rfm_new",
        "value_elite",
        "value_loyal",
        "value_low",
        "high_intent",
        "cart_abandoner",
        "engaged_buyer",
        "low_engagement",
        "lapsed",
    },
    "stage": {"awareness", "consideration", "purchase", "retention", "advocacy"},
    "action": {
        "cart_recovery_offer",
        "reengagement",
        "early_access",
        "cross_sell",
        "review_request",
    },
}


def test_default_rules_have_exactly_the_playbook_ids() -> None:
    rules = load_rules(None)
    assert {s.id for s in rules.segment} == DEFAULT_IDS["segment"]
    assert {s.id for s in rules.stage} == DEFAULT_IDS["stage"]
    assert {a.action for a in rules.action} == DEFAULT_IDS["action"]
    assert rules.currency.primary == "USD"


def _problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "shop.toml")
    return caught.value.problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[segment]]\nid = "big"\nwhen = { trait = "revenue", gt = "lots" }\n',
            "shop.toml: segment 'big' (#1): when.gt: Input should be a valid number",
        ),
        (
            '[[segment]]\nid = "a"\n[[segment]]\nid = "typo"\n'
            'when = { all = [{ trait = "orders", gte = 1 }, { trait = "oders", gte = 1 }] }\n',
            "shop.toml: segment 'typo' (#2): when.all[1].trait: unknown trait 'oders'",
        ),
        (
            '[[segment]]\nid = "x"\nwhen = { trait = "orders", gte = 1, lt = 5 }\n',
            "shop.toml: segment 'x' (#1): when: a trait condition needs exactly one of",
        ),
        (
            '[[segment]]\nid = "x"\nwhen = { trait = "revenue", within = "7d" }\n',
            "shop.toml: segment 'x' (#1): when: within needs a time trait; 'revenue' is a number",
        ),
        (
            '[[segment]]\nid = "x"\nwhen = { trait = "last_seen", within = "a week" }\n',
            "shop.toml: segment 'x' (#1): when.within: 'a week' is not a duration",
        ),
        (
            '[[segment]]\nid = "x"\nwhen = { trait = "count.90d.*", gt = 1 }\n',
            "shop.toml: segment 'x' (#1): when.trait: window of 'count.90d.*' out of range",
        ),
        (
            '[[action]]\nid = "a"\naction = "call"\npriority = 1\nreason = "has {nothing}"\n',
            "shop.toml: action 'a' (#1): reason: unknown trait 'nothing'",
        ),
        (
            '[[action]]\nid = "a"\naction = "call"\npriority = 1\n',
            "shop.toml: action 'a' (#1): reason: Field required",
        ),
        (
            '[[experiment]]\nid = "e"\n'
            'variants = [{ id = "a", weight = 5000 }, { id = "b", weight = 4000 }]\n',
            "shop.toml: experiment 'e' (#1): variants: weights sum to 9000, they must sum to 10000",
        ),
        (
            '[[action]]\nid = "a"\naction = "call"\npriority = 1\nreason = "r"\n'
            'when = { segment = "ghost" }\n',
            "shop.toml: action 'a': when: unknown segment 'ghost'",
        ),
        (
            '[[action]]\nid = "a"\naction = "call"\npriority = 1\nreason = "r"\nexperiment = "e"\n',
            "shop.toml: action 'a': experiment: unknown experiment 'e'",
        ),
        (
            '[[segment]]\nid = "a"\nwhen = { segment = "b" }\n[[segment]]\nid = "b"\n',
            "shop.toml: segment 'a': when: segment 'b' is defined later",
        ),
        (
            '[[segment]]\nid = "a"\n[[segment]]\nid = "a"\n',
            "shop.toml: segment 'a': id: used twice",
        ),
        (
            '[[segment]]\nid = "Bad Id"\n',
            "shop.toml: segment 'Bad Id' (#1): id: String should match",
        ),
        ('[[segmnet]]\nid = "a"\n', "shop.toml: segmnet: Extra inputs are not permitted"),
        ("version = 2\n", "shop.toml: version: Input should be 1"),
        ('[currency]\nprimary = "usd"\n', "shop.toml: currency.primary: String should match"),
        ("[[segment]\n", "shop.toml: not valid TOML"),
        # Accepted once, then failing or never matching at decision time:
        (
            '[[action]]\nid = "a"\naction = "x"\npriority = 1\nreason = "Spent {revenue:.2f}"\n',
            "shop.toml: action 'a' (#1): reason: {revenue:.2f}: write a trait as {revenue}",
        ),
        (
            '[[action]]\nid = "a"\naction = "x"\npriority = 1\nreason = "{top_category!z}"\n',
            "shop.toml: action 'a' (#1): reason: {top_category!z}: write a trait as",
        ),
        (
            '[[segment]]\nid = "s"\nwhen = { trait = "orders", eq = "1" }\n',
            "shop.toml: segment 's' (#1): when: eq: '1' can never equal 'orders', a number",
        ),
        (
            '[[segment]]\nid = "s"\nwhen = { trait = "top_category", in = [1, 2] }\n',
            "shop.toml: segment 's' (#1): when: in: 1 can never equal 'top_category', a text",
        ),
        (
            '[[experiment]]\nid = "e"\nvariants = [{ id = "a", weight = 5000 }, '
            '{ id = "a", weight = 5000 }]\n',
            "shop.toml: experiment 'e' (#1): variants: ids must differ; given twice: a",
        ),
        (
            "[currency]\nrates = { EUR = inf }\n",
            "shop.toml: currency: rates.EUR: a 3-letter code with a finite rate above 0",
        ),
    ],
)
def test_each_error_names_file_rule_and_field(text: str, expected: str) -> None:
    problems = _problems(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    text = (
        '[[segment]]\nid = "a"\nwhen = { trait = "nope", gt = 1 }\n'
        '[[segment]]\nid = "b"\nwhen = { trait = "orders", gt = "x" }\n'
    )
    problems = _problems(text)
    assert len(problems) == 2
    assert "segment 'a'" in problems[0]
    assert "segment 'b'" in problems[1]


def test_a_file_on_disk_is_named_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[segment]]\nid = "x"\nwhen = { trait = "orders", gte = "one" }\n')
    with pytest.raises(RulesError, match=r"rules\.toml: segment 'x' \(#1\): when\.gte"):
        load_rules(path)
    with pytest.raises(RulesError, match=r"missing\.toml: cannot be read"):
        load_rules(tmp_path / "missing.toml")


def test_a_valid_custom_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[currency]\nprimary = "EUR"\nrates = { USD = 0.92 }\n'
        '[[segment]]\nid = "vip"\nwhen = { trait = "revenue", gte = 1000 }\n'
        '[[action]]\nid = "call"\naction = "phone_call"\npriority = 5\n'
        'when = { segment = "vip" }\nreason = "Spent {revenue} {currency}"\n'
    )
    rules = load_rules(path)
    assert rules.currency.rates == {"USD": 0.92}
    assert rules.action[0].when is not None
    assert rules.action[0].when.segments() == ["vip"]
