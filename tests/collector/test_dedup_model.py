"""The dedup window's batch operations against the rules they implement, one id at a time.

``Deduplicator`` decides the usual batch (distinct ids, none known) with set operations; this
model applies the rules per id, in order, as the window did before: any sequence of reserves,
commits, releases and clock steps must give the same answers and keep the same ids, in the
same order, within the same bound.
"""

from __future__ import annotations

from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st

from journeykit.collector.dedup import Deduplicator

WINDOW = 10.0
MAX = 6


class _Model:
    def __init__(self) -> None:
        self.seen: OrderedDict[str, float] = OrderedDict()
        self.pending: set[str] = set()

    def reserve(self, ids: list[str], now: float) -> list[bool]:
        while self.seen and next(iter(self.seen.values())) <= now - WINDOW:
            self.seen.popitem(last=False)
        out = []
        for mid in ids:
            new = mid not in self.seen and mid not in self.pending
            if new:
                self.pending.add(mid)
            out.append(new)
        return out

    def commit(self, ids: list[str], now: float) -> None:
        for mid in ids:
            self.pending.discard(mid)
            self.seen[mid] = now
            self.seen.move_to_end(mid)
        while len(self.seen) > MAX:
            self.seen.popitem(last=False)

    def release(self, ids: list[str]) -> None:
        self.pending.difference_update(ids)


_ids = st.lists(st.sampled_from("abcdefghij"), max_size=5)
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), _ids),
        st.tuples(st.just("commit"), _ids),
        st.tuples(st.just("release"), _ids),
        st.tuples(st.just("tick"), st.floats(min_value=0, max_value=6)),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(_steps)
def test_batches_behave_as_the_per_id_rules(steps: list[tuple[str, object]]) -> None:
    now = [0.0]
    dedup = Deduplicator(WINDOW, MAX, clock=lambda: now[0])
    model = _Model()
    for op, arg in steps:
        if op == "tick":
            assert isinstance(arg, float)
            now[0] += arg
            continue
        assert isinstance(arg, list)
        if op == "reserve":
            assert dedup.reserve(arg) == model.reserve(arg, now[0])
        elif op == "commit":
            dedup.commit(arg)
            model.commit(arg, now[0])
        else:
            dedup.release(arg)
            model.release(arg)
        # The same ids, oldest first, and the same ids reserved.
        assert list(dedup._seen.items()) == list(model.seen.items())
        assert dedup._pending == model.pending
