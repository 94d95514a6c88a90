"""Message ids from the per-process pool: valid version 4 UUIDs, never repeated, not across fork."""

from __future__ import annotations

import copy
import os
import threading
import uuid

import pytest
from helpers import in_forked_child

from journeykit.sdk import _ids


def test_ids_are_canonical_rfc_4122_version_4_uuids() -> None:
    ids = [_ids.message_id() for _ in range(3 * _ids.BLOCK + 7)]  # several refills
    for mid in ids:
        parsed = uuid.UUID(mid)
        assert str(parsed) == mid  # lower-case, 8-4-4-4-12
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    assert len(set(ids)) == len(ids)


def test_the_random_bits_vary_in_every_position() -> None:
    # A stuck column (a formatting slip copying the same digit) would show as one value only.
    ids = [_ids.message_id().replace("-", "") for _ in range(2_000)]
    for column in range(32):
        seen = {mid[column] for mid in ids}
        if column == 12:
            assert seen == {"4"}
        elif column == 16:
            assert seen == set("89ab")
        else:
            assert len(seen) == 16


def test_threads_never_get_the_same_id() -> None:
    found: list[list[str]] = [[] for _ in range(8)]

    def draw(out: list[str]) -> None:
        out.extend(_ids.message_id() for _ in range(2_000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [mid for out in found for mid in out]
    assert len(set(every)) == len(every) == 16_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_does_not_hand_out_its_parents_unused_ids() -> None:
    _ids.message_id()  # the pool now holds ids the parent has not used yet
    child = in_forked_child(lambda: [_ids.message_id() for _ in range(50)])
    parent = [_ids.message_id() for _ in range(50)]
    assert len(child) == 50
    assert not set(child) & set(parent)


def test_reset_discards_the_ids_not_handed_out() -> None:
    # What a client does when it notices a new pid after a fork that skipped the hooks.
    _ids.message_id()
    upcoming = list(copy.copy(_ids.pool.ids))  # read, not patched: what would come next
    assert upcoming
    _ids.reset()
    after = [_ids.message_id() for _ in range(len(upcoming))]
    assert not set(upcoming) & set(after)
