"""The dedup window against what it promises, over any sequence of operations.

``Deduplicator`` keeps ids in generations (a slice of the window each); this test holds it to
its documented guarantees, checked against a plain record of what was committed when:

- never a false duplicate: an id is reported seen only while it is reserved, or within the
  window plus one generation's span of its last commit;
- never a missed one: an id is reported seen while it is reserved, or within the window of
  its last commit (the memory bound set high enough not to evict anything);
- the memory bound: ``len()`` never exceeds ``max_entries``, and an eviction forgets the
  oldest commits first.
"""

from __future__ import annotations

import gc
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journeykit.collector.dedup import GENERATIONS, Deduplicator

WINDOW = 8.0
SPAN = WINDOW / GENERATIONS

_ids = st.lists(st.sampled_from("abcdefghijkl"), max_size=6)
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), _ids),
        st.tuples(st.just("commit"), _ids),
        st.tuples(st.just("release"), _ids),
        st.tuples(st.just("tick"), st.floats(min_value=0, max_value=4)),
    ),
    max_size=40,
)


def _run(steps: list[tuple[str, object]], max_entries: int, lookup_sets: int = 1) -> None:
    now = [0.0]
    dedup = Deduplicator(WINDOW, max_entries, clock=lambda: now[0], lookup_sets=lookup_sets)
    committed: dict[str, float] = {}  # id -> time of its last commit
    pending: set[str] = set()
    order: list[str] = []  # commits, oldest first, an id once (at its last commit)
    for op, arg in steps:
        if op == "tick":
            assert isinstance(arg, float)
            now[0] += arg
            continue
        assert isinstance(arg, list)
        if op == "reserve":
            answers = dedup.reserve(arg)
            seen_here: set[str] = set()
            for mid, new in zip(arg, answers, strict=True):
                age = now[0] - committed[mid] if mid in committed else None
                if mid in pending or mid in seen_here:
                    assert not new, mid
                elif age is not None and age < WINDOW and max_entries >= 100:
                    assert not new, (mid, age)  # never a missed duplicate
                if not new and mid not in pending and mid not in seen_here:  # never false
                    assert age is not None, mid
                    assert age <= WINDOW + SPAN, (mid, age)
                if new:
                    pending.add(mid)
                seen_here.add(mid)
        elif op == "commit":
            dedup.commit(arg)
            pending.difference_update(arg)
            for mid in arg:
                committed[mid] = now[0]
                if mid in order:
                    order.remove(mid)
                order.append(mid)
        else:
            dedup.release(arg)
            pending.difference_update(arg)
        assert len(dedup) <= max_entries


# Lookup sets: each generation (0), one, or several taking the generations in turn.
_sets = st.integers(min_value=0, max_value=3)


@settings(max_examples=300, deadline=None)
@given(_steps, _sets)
def test_within_the_window_every_commit_is_remembered_and_none_beyond(
    steps: list[tuple[str, object]], lookup_sets: int
) -> None:
    _run(steps, max_entries=100, lookup_sets=lookup_sets)


@settings(max_examples=300, deadline=None)
@given(_steps, st.integers(min_value=1, max_value=6), _sets)
def test_the_memory_bound_holds_and_answers_stay_sound(
    steps: list[tuple[str, object]], max_entries: int, lookup_sets: int
) -> None:
    _run(steps, max_entries, lookup_sets)


def _check_layout(dedup: Deduplicator) -> None:
    """With lookup sets: each id in exactly one generation, each set exactly its generations'
    ids, ``len()`` the number of ids (forgetting a generation takes its ids out of its set, so
    an id left in two, or missing from its set, is a duplicate missed or made up later)."""
    unions = dedup._unions
    if unions is None:
        return
    generations = list(dedup._generations)
    owner: dict[str, object] = {}
    for generation in generations:
        for mid in generation.ids:
            assert mid not in owner, f"{mid} in two generations"
            owner[mid] = generation
    for union in unions:
        assert union == set().union(*(g.ids for g in generations if g.union is union))
    assert len(dedup) == len(owner) <= dedup._max


_many_ids = st.lists(st.sampled_from("abcdefghijklmnop"), max_size=20)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["reserve", "commit", "release"]), _many_ids),
            st.tuples(st.just("tick"), st.floats(min_value=0, max_value=4)),
        ),
        max_size=40,
    ),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=3),
)
def test_the_lookup_sets_hold_each_id_once_after_any_step(
    steps: list[tuple[str, object]], max_entries: int, lookup_sets: int
) -> None:
    now = [0.0]
    dedup = Deduplicator(WINDOW, max_entries, clock=lambda: now[0], lookup_sets=lookup_sets)
    for op, arg in steps:
        if op == "tick":
            assert isinstance(arg, float)
            now[0] += arg
        else:
            assert isinstance(arg, list)
            getattr(dedup, op)(arg)
        _check_layout(dedup)


@pytest.mark.parametrize("lookup_sets", [0, 1, 2])
def test_an_id_twice_in_a_commit_is_kept_at_its_last_place(lookup_sets: int) -> None:
    # Generations of one id: "a" first goes with the oldest, which the bound forgets first;
    # its second copy is the one that counts, as in a batch larger than the bound.
    dedup = Deduplicator(3600, 3, lookup_sets=lookup_sets)
    dedup.commit(["a", "b", "c", "d", "a"])
    assert dedup.reserve(["a", "b"]) == [False, True]


def test_eviction_forgets_the_oldest_commits_first() -> None:
    dedup = Deduplicator(window=3600, max_entries=16)  # generations of 2 ids
    for n in range(0, 24, 2):
        dedup.commit([f"m{n}", f"m{n + 1}"])
    assert len(dedup) == 16
    assert dedup.reserve([f"m{n}" for n in range(24)]) == [True] * 8 + [False] * 16


def test_a_batch_over_the_bound_keeps_its_last_ids() -> None:
    dedup = Deduplicator(window=3600, max_entries=3)
    dedup.commit(["a", "b"])
    dedup.commit(["c", "d", "e", "f"])
    assert len(dedup) == 3
    assert dedup.reserve(["a", "b", "c", "d", "e", "f"]) == [True] * 3 + [False] * 3


def test_generations_are_forgotten_whole_after_the_window() -> None:
    now = [0.0]
    dedup = Deduplicator(window=80, max_entries=1_000, clock=lambda: now[0])  # spans of 10 s
    dedup.commit(["early"])
    now[0] = 5
    dedup.commit(["later"])  # the same generation: it began at 0
    now[0] = 12
    dedup.commit(["next"])  # a new one
    now[0] = 84.9  # "later" and "next" within 80 s; "early" beyond, kept with its generation
    assert dedup.reserve(["early", "later", "next"]) == [False, False, False]
    now[0] = 85.1  # its last commit (at 5) is past the window: the generation goes whole
    assert dedup.reserve(["early", "later", "next"]) == [True, True, False]
    assert len(dedup) == 1


@pytest.mark.parametrize("lookup_sets", [0, 1, 2])
def test_an_id_committed_again_outlives_its_first_generation(lookup_sets: int) -> None:
    # Lookups go to sets of several generations' ids; forgetting the first generation must
    # not take out an id a later commit moved to a younger one.
    now = [0.0]
    dedup = Deduplicator(8, 100, clock=lambda: now[0], lookup_sets=lookup_sets)  # spans of 1 s
    dedup.commit(["again", "once"])
    now[0] = 1.5
    dedup.commit(["again"])
    now[0] = 8.6  # the first generation is past the window; the second commit is not
    assert dedup.reserve(["again", "once"]) == [False, True]
    assert len(dedup) == 1


def test_lookup_sets_grow_with_the_bound_then_give_way_to_the_generations() -> None:
    assert Deduplicator(60, 100).lookup_sets == 1
    assert Deduplicator(60, 62_500).lookup_sets == 1
    assert Deduplicator(60, 125_000).lookup_sets == 2
    assert Deduplicator(60, 125_001).lookup_sets == 0  # each generation looked up
    assert Deduplicator(60, 500_000).lookup_sets == 0  # the default bound
    with pytest.raises(ValueError, match=r"0 \(the generations\) or more"):
        Deduplicator(60, 100, lookup_sets=-1)


def test_a_window_refilled_at_start_loses_an_eighth_at_the_bound_not_all() -> None:
    dedup = Deduplicator(window=3600, max_entries=1_000)
    rebuilt = [f"old{n}" for n in range(1_000)]  # recent_message_ids, oldest first, at the bound
    dedup.commit(rebuilt)
    dedup.commit(["new0", "new1"])
    assert len(dedup) <= 1_000
    answers = dedup.reserve(rebuilt)
    assert answers[:125] == [True] * 125  # the oldest generation went
    assert answers[125:] == [False] * 875  # the rest is still remembered


def test_young_collections_never_walk_the_remembered_ids() -> None:
    # A young collection walks every young container: new dedup generations left young until
    # one happened cost 10-33 ms per collection in a serving collector (collections are rare
    # there). Automatic collections are held off here, so only the window's own can move them.
    thresholds = gc.get_threshold()
    gc.set_threshold(1_000_000_000)
    try:
        dedup = Deduplicator(60.0, 8_000)
        ids = [f"message-{i}" for i in range(8_000)]
        for start in range(0, len(ids), 100):
            dedup.reserve(ids[start : start + 100])
            dedup.commit(ids[start : start + 100])
        walked = {
            id(referent)
            for young in (0, 1)
            for container in gc.get_objects(generation=young)
            if container is not ids  # the test's own list of them
            for referent in gc.get_referents(container)
        }
    finally:
        gc.set_threshold(*thresholds)
    assert len(dedup) == 8_000
    assert not any(id(mid) in walked for mid in ids)
    assert dedup.reserve([*ids[:3], "new"]) == [False, False, False, True]


def test_the_tag_table_misses_no_duplicate_over_hundreds_of_generations() -> None:
    # The generations are looked up only for ids whose slot of the tag table holds a live
    # generation's tag. A bound of 100 makes a table of 2,048 slots, shared by many ids, and
    # 800 generations take the 255 tags round three times: a tag written long ago reads live
    # again. Neither may make a remembered id look new.
    rng = random.Random(7)
    pool = [f"id-{n}" for n in range(300)]
    now = [0.0]
    dedup = Deduplicator(WINDOW, 100, clock=lambda: now[0], lookup_sets=0)
    committed: dict[str, float] = {}
    duplicates = 0
    for _ in range(800):
        now[0] += SPAN  # a new generation at each commit
        batch = rng.sample(pool, 5)
        answers = dedup.reserve(batch)
        for mid, new in zip(batch, answers, strict=True):
            age = now[0] - committed[mid] if mid in committed else None
            if age is not None and age < WINDOW:
                assert not new, (mid, age)  # never a missed duplicate
                duplicates += 1
            elif age is None or age > WINDOW + SPAN:
                assert new, (mid, age)  # never a false one
        fresh = [mid for mid, new in zip(batch, answers, strict=True) if new]
        dedup.commit(fresh)
        committed.update(dict.fromkeys(fresh, now[0]))
    assert duplicates > 50  # the case above was met, not only new ids
