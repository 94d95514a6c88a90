"""A serving process's garbage-collector and switch-interval settings (``_tuning.py``)."""

from __future__ import annotations

import subprocess
import sys

_CHECK = """
import gc, sys
from journeykit.collector._gc import GC_THRESHOLDS
from journeykit.collector._tuning import SWITCH_INTERVAL, tune_for_serving
import journeykit.collector.app  # importing the app must not touch the process settings
assert gc.get_threshold() != GC_THRESHOLDS, gc.get_threshold()
assert gc.get_freeze_count() == 0
assert sys.getswitchinterval() != SWITCH_INTERVAL
tune_for_serving()
assert gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold()
assert sys.getswitchinterval() == SWITCH_INTERVAL
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()  # start-up objects set aside
print("ok")
"""


def test_tuning_happens_when_serving_and_never_on_import() -> None:
    # In a child process: freezing this test process's objects would outlive the test.
    done = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
