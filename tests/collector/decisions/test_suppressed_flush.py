"""A flush leaves out the queued events of suppressed subjects: an erased profile stays erased.

An erasure suppresses a subject, then deletes its profile; another worker may still hold the
subject's last events in its write-behind queue and must not write them back.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

import pytest
from decisions_helpers import HOUR, Clock, EngineFactory, identify, order, view
from helpers import PSEUDONYM_KEY
from pydantic import SecretStr

from journeykit.collector.personalize import Personalizer
from journeykit.collector.privacy import PrivacyStep
from journeykit.collector.settings import CollectorSettings
from journeykit.collector.suppression import SuppressionList
from journeykit.consent import ConsentLedger, Pseudonymizer, PseudonymKey, Regime


@pytest.fixture
def mode() -> str:
    """Only the queued mode: with write-through nothing waits in a queue."""
    return "queued"


def test_a_flush_does_not_write_back_a_subject_erased_meanwhile(
    make_engine: EngineFactory, clock: Clock
) -> None:
    suppressed: set[str] = set()

    def on_list(ids: Collection[str]) -> set[str]:
        return suppressed & set(ids)

    worker = make_engine(suppressed=on_list)
    eraser = make_engine()  # another worker, or the erasure command, on the same store
    t = clock.now - HOUR
    worker.update(
        [
            view("gone", "p1", t),
            identify("gone", "anon-gone", t + 1),
            order("gone", t + 2, 50.0, ["p1"]),
            view("kept", "p2", t),
        ]
    )
    suppressed.update({"gone", "anon-gone"})  # what the erasure does first
    eraser.forget(["gone", "anon-gone"])
    assert worker.flush()
    assert eraser.profile("gone") is None
    assert eraser.profile("anon-gone") is None
    kept = eraser.profile("kept")
    assert kept is not None
    assert kept["views"] == 1
    assert worker.stats["events_skipped_suppressed"] == 3
    assert worker.pending == 0  # left out, not kept for later


def test_unsuppressed_subjects_are_written_as_before(
    make_engine: EngineFactory, clock: Clock
) -> None:
    asked: list[set[str]] = []

    def on_list(ids: Collection[str]) -> set[str]:
        asked.append(set(ids))
        return set()

    worker = make_engine(suppressed=on_list)
    worker.update([view("ann", "p1", clock.now - HOUR), identify("ann", "anon-ann", clock.now)])
    assert worker.flush()
    assert asked == [{"ann", "anon-ann"}]
    profile = make_engine().profile("anon-ann")  # the alias is followed to ann's profile
    assert profile is not None
    assert profile["views"] == 1


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[Personalizer, SuppressionList]]:
    """The collector's personalizer and the suppression list it was given."""
    settings = CollectorSettings(
        data_dir=tmp_path / "data",
        pseudonym_key=SecretStr(PSEUDONYM_KEY),
        write_keys=(SecretStr("k"),),
    )
    key = PseudonymKey(key_id=settings.pseudonym_key_id, secret=SecretStr(PSEUDONYM_KEY))
    pseudonymizer = Pseudonymizer([key])
    suppression = SuppressionList.open(settings.data_dir, pseudonymizer)
    privacy = PrivacyStep(
        ledger=ConsentLedger.open(settings.data_dir, demo_key=True),
        pseudonymizer=pseudonymizer,
        regime=Regime.OPT_IN,
        suppression=suppression,
    )
    personalizer = Personalizer(settings, privacy)
    yield personalizer, suppression
    personalizer.close()
    privacy.close()


def test_the_collector_answers_from_its_suppression_list(
    collector: tuple[Personalizer, SuppressionList],
) -> None:
    personalizer, suppression = collector
    assert personalizer.suppressed(["gone", "kept"]) == set()  # an empty list: nothing
    suppression.add("gone", "erased (test)")
    assert personalizer.suppressed(["gone", "kept", "bad\x00id"]) == {"gone"}
    suppression.remove("gone")
    assert personalizer.suppressed(["gone", "kept"]) == set()
