"""The reliable pop end to end: a real worker whose broker connection loses the replies to its
blocking pops (a proxy closes the connection instead of forwarding them), steps from a bare
`send_task` producer. Each message was taken off the queue by Redis; none may be lost."""

from __future__ import annotations

import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.broker_proxy import blocking_pop, lossy_proxy
from tests.support import RedisServer, WorkerProcess, wait_until
from worker.messaging.broker import INBOX_MARK, INBOX_STALE_S, INBOXES
from worker.messaging.names import QUEUE, TASK_NAME
from zns_dev.sandbox.control import SandboxControl

StartWorker = Callable[..., WorkerProcess]
STEPS, DROPS = 40, 5


def _step(n: int) -> dict[str, object]:
    return {
        "phone": f"84977{n:06d}",
        "template_id": "900",
        "template_data": {"n": n},
        "journey": f"pop-{n}",
        "idempotency_key": f"pop-{n}",
    }


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_a_lost_blocking_pop_reply_loses_no_message(
    redis_server: RedisServer,
    redis_url: str,
    start_worker: StartWorker,
    control: SandboxControl,
) -> None:
    # Given a worker whose broker connection goes through a proxy that loses the reply to the
    # first 5 blocking pops that carry a message (Redis has taken each off the queue)
    with lossy_proxy(redis_server.port, drops=DROPS) as proxy:
        start_worker(concurrency=4, ZNS_BROKER_URL=f"redis://127.0.0.1:{proxy.port}/0")
        # When a producer we did not write trickles 40 steps onto the queue, directly
        producer = Celery(broker=redis_url)
        for n in range(STEPS):
            producer.send_task(TASK_NAME, kwargs=_step(n), queue=QUEUE)
            time.sleep(0.1)
        # Then every step is sent exactly once, well within the visibility timeout (240 s)
        started = time.monotonic()
        wait_until(lambda: len(control.messages()) >= STEPS, timeout_s=60, what="40 sends")
        took = time.monotonic() - started
        time.sleep(1)  # a duplicate would show up now
        sent = Counter(m.phone for m in control.messages())
        assert len(sent) == STEPS and set(sent.values()) == {1}, sent
        # And the proxy did lose 5 replies (the test tested something)
        assert proxy.dropped == DROPS
    assert took < 60


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_message_left_in_a_dead_workers_inbox_is_put_back_and_sent_once(
    redis_url: str, start_worker: StartWorker, control: SandboxControl
) -> None:
    # Given what a worker killed between its blocking move and its drain leaves: a step in its
    # inbox, the inbox last seen longer ago than the visibility timeout (240 s)
    client = redis.Redis.from_url(redis_url)
    Celery(broker=redis_url).send_task(TASK_NAME, kwargs=_step(1), queue=QUEUE)
    dead_inbox = f"{QUEUE}\x06\x16{INBOX_MARK}gone-host.4242"
    client.lmove(QUEUE, dead_inbox, "RIGHT", "LEFT")
    client.zadd(INBOXES, {dead_inbox: time.time() - 300})
    # And an inbox seen just now (a live worker's, between its move and its drain)
    Celery(broker=redis_url).send_task(TASK_NAME, kwargs=_step(2), queue=QUEUE)
    live_inbox = f"{QUEUE}\x06\x16{INBOX_MARK}live-host.4343"
    client.lmove(QUEUE, live_inbox, "RIGHT", "LEFT")
    client.zadd(INBOXES, {live_inbox: time.time()})
    # When a worker starts (it sweeps at start and every 10 s)
    start_worker(concurrency=2)
    # Then the dead worker's step is put back and sent once; the live worker's is left to it
    wait_until(lambda: len(control.messages()) >= 1, timeout_s=30, what="the dead inbox's step")
    time.sleep(1)
    assert [m.phone for m in control.messages()] == [_step(1)["phone"]]
    assert client.exists(dead_inbox) == 0 and client.zscore(INBOXES, dead_inbox) is None
    assert client.llen(live_inbox) == 1


#: Timeouts short enough for a test to wait out the visibility timeout (30 s, its minimum), and
#: consistent with it (worker/settings.py refuses any that contradict each other).
SHORT_TIMEOUTS = {
    "ZNS_CELERY__VISIBILITY_TIMEOUT_S": "30",
    "ZNS_CELERY__SOFT_TIME_LIMIT_S": "8",
    "ZNS_CELERY__TIME_LIMIT_S": "12",
    "ZNS_PIPELINE__CLAIM_TTL_S": "13",
    "ZNS_PIPELINE__RETRY_BASE_DELAY_S": "1",
    "ZNS_PIPELINE__RETRY_MAX_DELAY_S": "5",
    "ZNS_PIPELINE__TOKEN_WAIT_S": "5",
}


def _pop_many(request: bytes) -> bool:
    """The drain (broker_pop_many.lua): the only script called with the unacked index and the
    inbox registry (the inbox sweep has no unacked index)."""
    return (
        b"EVALSHA" in request.upper()
        and b"unacked_index" in request
        and INBOXES.encode() in request
    )


def _inbox_of(worker: WorkerProcess) -> str:
    return f"{QUEUE}\x06\x16{INBOX_MARK}{socket.gethostname()}.{worker.pid}"


@pytest.mark.integration
@pytest.mark.timeout(180)
@pytest.mark.parametrize("crash_point", ["after the move", "after the drain"])
def test_a_worker_killed_at_each_crash_point_of_the_pop_loses_nothing(  # noqa: PLR0917 (fixtures)
    crash_point: str,
    redis_server: RedisServer,
    redis_url: str,
    worker_env: dict[str, str],
    start_worker: StartWorker,
    control: SandboxControl,
    tmp_path: Path,
) -> None:
    # Given a worker whose broker connection goes through a proxy that, when Redis answers the
    # blocking move (or the drain) with a message, kills the worker (SIGKILL) instead of
    # forwarding the answer: Redis has done the move (or the drain), the worker never learns it
    watch = blocking_pop if crash_point == "after the move" else _pop_many
    client = redis.Redis.from_url(redis_url)
    victims: list[WorkerProcess] = []

    def kill_victim() -> None:
        victims[0].kill()

    with lossy_proxy(redis_server.port, 1, watch, on_drop=kill_victim) as proxy:
        via_proxy = {**SHORT_TIMEOUTS, "ZNS_BROKER_URL": f"redis://127.0.0.1:{proxy.port}/0"}
        victim = WorkerProcess({**worker_env, **via_proxy}, tmp_path / "victim.log", concurrency=2)
        victims.append(victim)
        try:
            if crash_point == "after the move":
                # (queued first: an idle worker's drain, after each 1 s move timeout, could take
                # it from the queue itself, and the move would never carry it)
                Celery(broker=redis_url).send_task(TASK_NAME, kwargs=_step(7), queue=QUEUE)
            with suppress(RuntimeError):  # killed before its ready line
                victim.start()
            if crash_point == "after the drain":
                Celery(broker=redis_url).send_task(TASK_NAME, kwargs=_step(7), queue=QUEUE)
            wait_until(lambda: proxy.dropped == 1, timeout_s=30, what="the watched answer")
        finally:
            victim.stop(timeout_s=5)
    assert victim.process is not None and victim.process.returncode == -signal.SIGKILL
    # (where the message is now: the dead worker's inbox, or kombu's unacked hash)
    if crash_point == "after the move":
        assert client.llen(_inbox_of(victim)) == 1 and client.llen(QUEUE) == 0
    else:
        assert client.hlen("unacked") == 1 and client.llen(_inbox_of(victim)) == 0
    # When another worker runs (a new process: it sweeps at start and every 10 s)
    killed_at = time.monotonic()
    start_worker(concurrency=2, **SHORT_TIMEOUTS)
    # Then the step is sent exactly once, within the stale-inbox time or the visibility timeout
    # (30 s here) and one sweep period
    wait_until(lambda: len(control.messages()) >= 1, timeout_s=60, what="the step sent")
    took = time.monotonic() - killed_at
    time.sleep(1)  # a duplicate would show up now
    assert [m.phone for m in control.messages()] == [_step(7)["phone"]]
    bound_s = INBOX_STALE_S if crash_point == "after the move" else 30
    assert took < bound_s + 10 + 10  # + its start-up, on a busy machine
