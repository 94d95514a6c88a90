"""Lone surrogate escapes replaced in a body's bytes, and nothing else touched."""

from __future__ import annotations

import orjson
import pytest

from journeykit.collector._surrogates import _ESCAPE, repair_lone_surrogates


@pytest.mark.parametrize(
    ("body", "expected", "replaced"),
    [
        (b'"Sale \\ud83c"', "Sale \ufffd", 1),
        (b'"\\udc00x"', "\ufffdx", 1),  # a low one alone
        (b'"\\ud800\\ud800"', "\ufffd\ufffd", 2),  # two highs: neither has its low
        (b'"\\\\\\ud83c"', "\\\ufffd", 1),  # an escaped backslash, then the escape
        (b'"a\\\\ud83c\\udc00"', "a\\ud83c\ufffd", 1),  # "\\ud83c" is text: the low is alone
        (b'"\\uD83C"', "\ufffd", 1),  # upper-case hex
    ],
)
def test_lone_escapes_become_replacement_characters(
    body: bytes, expected: str, replaced: int
) -> None:
    fixed = repair_lone_surrogates(body)
    assert fixed is not None
    assert (orjson.loads(fixed[0]), fixed[1]) == (expected, replaced)


@pytest.mark.parametrize(
    "body",
    [
        b'"\\ud83c\\udf89"',  # a pair: one character
        b'"a\\\\ud83c"',  # an escaped backslash and the text "ud83c"
        b'"no escapes"',
    ],
)
def test_bodies_without_a_lone_escape_are_left_alone(body: bytes) -> None:
    assert repair_lone_surrogates(body) is None


def test_a_long_run_of_escaped_backslashes_is_one_pass() -> None:
    # Tried from every backslash of the run, this body took minutes (quadratic): a 590-byte
    # gzip request without a key froze a worker. A match starts only where a run starts.
    assert _ESCAPE.match(b"\\\\\\ud800", 1) is None  # not from inside the run
    body = b'{"t":"\\ud800' + b"\\\\" * 250_000 + b'"}'
    fixed = repair_lone_surrogates(body)
    assert fixed is not None
    text = orjson.loads(fixed[0])["t"]
    assert (text[0], len(text), fixed[1]) == ("\ufffd", 250_001, 1)
