"""worker/pipeline/answer_times.py: slow means Zalo is slow for the account (by the interpreter's
wait, or slower than the neighbours), not that the process is busy."""

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
        times.record_lag(0.3)
        times.record("a", 1.5)
        times.record("b", 1.4)
    assert not times.slow("a") and not times.slow("b")


def test_alone_or_with_neighbours_long_gone_a_busy_process_is_not_slow() -> None:
    now = [0.0]
    times = AnswerTimes(slow_s=1.0, clock=lambda: now[0])
    times.record("fast", 0.1)
    now[0] = RECENT_S + 1
    for _ in range(10):
        times.record_lag(0.4)
        times.record("slow", 2.0)
    # 2 s, of which 3 x 0.4 s waiting for the interpreter: and no neighbour is faster now
    assert not times.slow("slow")
    assert not AnswerTimes(slow_s=1.0).slow("never-seen")


def test_fast_answers_are_never_slow_whatever_the_neighbours() -> None:
    times = AnswerTimes(slow_s=1.0)
    times.record("a", 0.9)
    times.record("b", 0.01)
    assert not times.slow("a")  # under the threshold


def test_alone_an_account_zalo_answers_slowly_is_slow_when_the_process_is_not_busy() -> None:
    times = AnswerTimes(slow_s=1.0)
    for _ in range(10):
        times.record("slow", 2.0)
        times.record_lag(0.005)
    assert times.slow("slow") and times.capped("slow")


def test_answers_slowed_by_a_busy_interpreter_are_not_slow() -> None:
    # Given a process so busy that a thread waits 0.4 s for its turn (the probe wakes that late)
    times = AnswerTimes(slow_s=1.0)
    for _ in range(10):
        times.record_lag(0.4)
        times.record("fast", 1.3)  # 0.1 s of Zalo, the rest waiting for the interpreter
    # Then the account is not slow, and not capped
    assert times.lag > 0.35
    assert not times.slow("fast") and not times.capped("fast")


def test_an_account_no_answer_came_back_for_yet_is_capped_not_slow() -> None:
    times = AnswerTimes(slow_s=1.0)
    assert times.capped("new") and not times.slow("new")
    times.record("new", 0.1)
    assert not times.capped("new")
