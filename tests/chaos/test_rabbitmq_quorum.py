"""The RabbitMQ node itself killed (kill -9) and restarted mid-run, `zns` a quorum queue
(`ZNS_CELERY__QUEUE_TYPE=quorum`), while a producer keeps enqueueing (the workers killed on a
quorum queue: tests/chaos/test_worker_crash.py).

The node scenario runs a private RabbitMQ node (tests/rabbitmq_node.py): killing the machine's
shared one would take every other vhost down with it. A single node cannot show a quorum
queue's failover to a replica (that needs three nodes); what it shows is that nothing a
producer was told "accepted" and nothing a worker held is lost when the broker crashes: a
quorum queue writes each message to its log before confirming it, and a message a dead
connection held goes back to the queue.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import pytest

from tests.chaos.harness import Chaos, rabbitmq_idle
from tests.chaos.report import Row
from tests.chaos.test_redis_restart import scenario
from tests.rabbitmq_node import RabbitNode

QUORUM = {"ZNS_CELERY__QUEUE_TYPE": "quorum"}
NODE_DOWN_S = 2.0


@pytest.fixture
def rabbit_node() -> Iterator[RabbitNode]:
    node = RabbitNode()
    try:
        yield node.start()
    finally:
        node.stop()


@pytest.mark.chaos_full
@pytest.mark.timeout(900)
def test_rabbitmq_node_kill_9_and_restart_quorum_queue(
    rabbit_node: RabbitNode, new_chaos: Callable[..., Chaos], record: Callable[[Row], None]
) -> None:
    # Given two workers and a producer on a private RabbitMQ node, `zns` a quorum queue
    def crash_and_restart(_: Chaos) -> float:
        down_at = time.time()
        rabbit_node.kill()
        time.sleep(NODE_DOWN_S)
        rabbit_node.start()
        return down_at

    # When the node is killed (kill -9) at 40% of the sends and started again 2 s later, while
    # the producer keeps enqueueing (retrying what the broker refused)
    row, _, _ = scenario(
        new_chaos,
        2000,
        "RabbitMQ node kill -9 + restart (quorum queue)",
        crash_and_restart,
        may_lose=False,
        broker_url=rabbit_node.url,
        broker_idle=rabbitmq_idle("/", rabbit_node.url, node=rabbit_node.name),
        env=QUORUM,
    )
    row.notes = row.notes.replace("after Redis was back", "after the node was back")
    record(row)
    # Then every step accepted is sent, none lost
    assert math.isfinite(row.drain_s), row.details["undrained"]
    assert row.lost == 0, row.details["lost_task_ids"]
    assert row.dead_lettered == 0
    assert row.failed_results == 0
