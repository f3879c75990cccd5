"""The reliable pop end to end: a real worker whose broker connection loses the replies to its
blocking pops (a proxy closes the connection instead of forwarding them), steps from a bare
`send_task` producer. Each message was taken off the queue by Redis; none may be lost."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
import redis
from celery import Celery

from tests.broker_proxy import lossy_proxy
from tests.support import RedisServer, WorkerProcess, wait_until
from worker.messaging.broker import INBOX_MARK, INBOXES
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
