"""worker/pipeline/answer_times.py: slow means slower than the neighbours, not a busy process."""

from __future__ import annotations

from worker.pipeline.answer_times import RECENT_S, AnswerTimes


def test_a_slow_account_is_slower_than_its_neighbours() -> None:
    now = [0.0]
    times = AnswerTimes(slow_s=1.0, clock=lambda: now[0])
    for _ in range(10):
        times.record("slow", 2.0)
        times.record("fast", 0.1)
    assert times.slow("slow") and not times.slow("fast")


def test_a_saturated_process_slows_every_account_alike_and_none_is_slow() -> None:
    times = AnswerTimes(slow_s=1.0)
    for _ in range(10):
        times.record("a", 1.5)
        times.record("b", 1.4)
    assert not times.slow("a") and not times.slow("b")


def test_alone_or_with_neighbours_long_gone_nothing_is_slow() -> None:
    now = [0.0]
    times = AnswerTimes(slow_s=1.0, clock=lambda: now[0])
    times.record("fast", 0.1)
    now[0] = RECENT_S + 1
    for _ in range(10):
        times.record("slow", 2.0)
    assert not times.slow("slow")  # nobody sends beside it: nobody to make room for
    assert not AnswerTimes(slow_s=1.0).slow("never-seen")


def test_fast_answers_are_never_slow_whatever_the_neighbours() -> None:
    times = AnswerTimes(slow_s=1.0)
    times.record("a", 0.9)
    times.record("b", 0.01)
    assert not times.slow("a")  # under the threshold
