"""worker/pipeline/answer_times.py: slow means slower than the neighbours, or, alone, slow while
the process is not busy with its own work."""

from __future__ import annotations

from worker.pipeline.answer_times import CPU_WINDOW_S, RECENT_S, AnswerTimes


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


def test_alone_an_account_is_slow_unless_the_process_is_busy_with_its_own_work() -> None:
    # Given one account answered in 2 s, its neighbour long gone, in a process whose CPU use
    # is set by the test
    now, cpu = [0.0], [0.0]
    times = AnswerTimes(slow_s=1.0, clock=lambda: now[0], cpu_clock=lambda: cpu[0])
    times.record("fast", 0.1)
    now[0] = RECENT_S + 1
    for _ in range(10):
        times.record("slow", 2.0)
    # When the process used a fifth of a core over the last window: Zalo is slow, cap it
    cpu[0] = 0.2 * now[0]
    assert times.slow("slow")
    # When it used a whole core over the next one: its threads wait for the interpreter
    now[0] += CPU_WINDOW_S
    cpu[0] += CPU_WINDOW_S
    assert not times.slow("slow")
    # And the share holds until a full window has passed
    now[0] += CPU_WINDOW_S / 2
    assert not times.slow("slow")
    assert not AnswerTimes(slow_s=1.0).slow("never-seen")


def test_fast_answers_are_never_slow_whatever_the_neighbours() -> None:
    times = AnswerTimes(slow_s=1.0)
    times.record("a", 0.9)
    times.record("b", 0.01)
    assert not times.slow("a")  # under the threshold
