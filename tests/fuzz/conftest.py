"""Hypothesis profile for the fuzz tests: repeatable in CI, bounded, and leaving no files.

``derandomize`` makes every run try the same inputs, so a failure in CI is a failure on a
laptop; no example database is kept, and Hypothesis' other files (its cache of constants
from the source) go to a temporary directory, so no ``.hypothesis`` appears in the checkout; no
deadline because two busy cores make per-example timing meaningless. Each test sets its own
``max_examples``; ``JOURNEYKIT_FUZZ_SCALE=20`` multiplies them for a longer local run.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

settings.register_profile(
    "journeykit-ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    # The collector is a module fixture shared by every example, on purpose: a server per
    # example would cost a second each.
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("journeykit-ci")


_HOME: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis's pytest plugin caches constants at collection time, before any fixture
    # runs, so the directory must be chosen here.
    home = Path(tempfile.mkdtemp(prefix="journeykit-hypothesis-"))
    _HOME.append(home)
    set_hypothesis_home_dir(home)


def pytest_unconfigure(config: pytest.Config) -> None:
    for home in _HOME:
        shutil.rmtree(home, ignore_errors=True)
