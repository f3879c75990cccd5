"""Fakes for the store tests: a settable clock, a recording sleep, threads started together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import TypeVar

import redis

from worker.clock import VIETNAM
from worker.state.connection import redis_client
from worker.state.keys import Keys
from worker.state.ratelimit import RateLimiter
from worker.state.step_gate import StepGate

T = TypeVar("T")

#: A fixed instant in the future (15:30 in Vietnam), so expiries computed from the fake clock are
#: still ahead of the real Redis clock and keys are not deleted on the spot.
FUTURE = datetime(2031, 3, 4, 15, 30, tzinfo=VIETNAM).timestamp()


class FakeClock:
    """A clock that moves only when told to; safe to read from many threads."""

    def __init__(self, start: float = FUTURE) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        with self._lock:
            self._now += seconds

    def set(self, now: float) -> None:
        """Jump to `now`."""
        with self._lock:
            self._now = now


class RecordingSleep:
    """An injected `sleep`: records each call and which threads called it; never waits long.

    With a clock it advances that clock by the requested time (a waiter's deadline passes without
    real waiting). `real_s` yields the CPU briefly so polling threads do not spin.
    """

    def __init__(self, clock: FakeClock | None = None, *, real_s: float = 0.0) -> None:
        self.calls: list[float] = []
        self._clock = clock
        self._real_s = real_s
        self._threads: set[int] = set()
        self._cond = threading.Condition()

    def __call__(self, seconds: float) -> None:
        with self._cond:
            self.calls.append(seconds)
            self._threads.add(threading.get_ident())
            self._cond.notify_all()
        if self._clock is not None:
            self._clock.advance(seconds)
        if self._real_s:
            time.sleep(self._real_s)

    def wait_for_sleepers(self, count: int, *, timeout_s: float) -> bool:
        """Block until `count` distinct threads have slept at least once (False on timeout)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._threads) >= count, timeout_s)


def run_in_threads(count: int, work: Callable[[int], T], *, timeout_s: float = 30.0) -> list[T]:
    """Run `work(i)` on `count` threads released together by a barrier; results in index order."""
    barrier = threading.Barrier(count)

    def task(index: int) -> T:
        barrier.wait(timeout_s)
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(task, index) for index in range(count)]
        return [future.result(timeout=timeout_s) for future in futures]


@contextmanager
def store_client(url: str) -> Iterator[redis.Redis]:
    """The project's Redis client (str replies, blocking pool) for `url`, disconnected after."""
    client = redis_client(url, max_connections=256)
    try:
        yield client
    finally:
        client.close()
        client.connection_pool.disconnect()


def step_gate(
    client: redis.Redis,
    keys: Keys,
    clock: FakeClock,
    *,
    claim_ttl_s: float = 30,
    retention_s: float = 3600,
    floor: int = 0,
) -> StepGate:
    """The hot path's gate as the runtime builds it, without a rate limit."""
    limiter = RateLimiter(client, keys, accounts=lambda _: None, max_wait_s=1)
    return StepGate(
        client,
        keys,
        limiter=limiter,
        clock=clock,
        claim_ttl_s=claim_ttl_s,
        retention_s=retention_s,
        quota_floor=floor,
    )
