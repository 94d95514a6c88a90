"""LoopBatches: the jobs ready in one pass of the event loop are run together, on the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from journeykit.collector._loop_batches import LoopBatches


class Recorder:
    """``one`` and ``many`` that answer ``job * 10``, recording calls and their thread."""

    def __init__(self, fail_many: bool = False, bad: int | None = None) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.threads: set[int] = set()
        self.fail_many = fail_many
        self.bad = bad

    def one(self, job: int) -> int:
        self.calls.append(("one", [job]))
        self.threads.add(threading.get_ident())
        if job == self.bad:
            raise ValueError(f"job {job} fails")
        return job * 10

    def many(self, jobs: list[int]) -> list[int]:
        self.calls.append(("many", list(jobs)))
        self.threads.add(threading.get_ident())
        if self.fail_many:
            raise RuntimeError("the batch fails")
        return [job * 10 for job in jobs]


def test_jobs_asked_in_one_pass_are_run_together_in_order_on_the_loop() -> None:
    recorder = Recorder()
    batches = LoopBatches(recorder.one, recorder.many)

    async def scenario() -> tuple[list[int], int, int]:
        together = await asyncio.gather(*(batches.run(job) for job in (3, 1, 2)))
        later = await batches.run(7)  # asked after that batch ran: a batch of its own
        return together, later, threading.get_ident()

    together, later, loop_thread = asyncio.run(scenario())
    assert (together, later) == ([30, 10, 20], 70)
    assert recorder.calls == [("many", [3, 1, 2]), ("one", [7])]
    assert recorder.threads == {loop_thread}


def test_when_the_batch_fails_each_job_is_run_alone_and_fails_on_its_own() -> None:
    recorder = Recorder(fail_many=True, bad=2)
    batches = LoopBatches(recorder.one, recorder.many)

    async def scenario() -> list[int | BaseException]:
        return await asyncio.gather(*(batches.run(j) for j in (1, 2, 3)), return_exceptions=True)

    first, bad, third = asyncio.run(scenario())
    assert (first, third) == (10, 30)
    assert isinstance(bad, ValueError)
    assert recorder.calls == [("many", [1, 2, 3]), ("one", [1]), ("one", [2]), ("one", [3])]


def test_a_caller_that_went_away_is_not_run() -> None:
    recorder = Recorder()
    batches = LoopBatches(recorder.one, recorder.many)

    async def scenario() -> list[int]:
        gone = asyncio.ensure_future(batches.run(1))
        kept = [asyncio.ensure_future(batches.run(j)) for j in (2, 3)]
        await asyncio.sleep(0)  # each has asked; the batch is scheduled after them
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return list(await asyncio.gather(*kept))

    assert asyncio.run(scenario()) == [20, 30]
    assert recorder.calls == [("many", [2, 3])]


def test_each_event_loop_gets_its_own_batches() -> None:
    recorder = Recorder()
    batches = LoopBatches(recorder.one, recorder.many)
    answers: list[int] = []

    def on_own_loop(job: int, asked: threading.Barrier) -> None:
        async def ask() -> int:
            asked.wait()  # both loops ask before either runs its batch
            return await batches.run(job)

        answers.append(asyncio.run(ask()))

    asked = threading.Barrier(2)
    threads = [threading.Thread(target=on_own_loop, args=(j, asked)) for j in (4, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(answers) == [40, 50]
    assert sorted(recorder.calls) == [("one", [4]), ("one", [5])]
