"""Bulk-enqueued steps travel several to a broker message (`zns.send_journey_steps`); each step
still gets its own send, result, retry and dead letter. Real Redis, sandbox and workers."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery

from tests.support import WorkerProcess, wait_until
from worker.messaging.celery_app import create_celery, publish_batch
from worker.messaging.names import BATCH_TASK_NAME, QUEUE, TASK_NAME
from worker.producer import Producer
from worker.runtime import Runtime
from worker.settings import Settings
from zns_dev.sandbox.control import SandboxControl

StartWorker = Callable[..., WorkerProcess]
PHONE = "0987654321"


def job(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "phone": f"09{n % 7:08d}",
        "template_id": "300",
        "template_data": {"n": n},
        "journey": f"batch-{n % 7}",
        "idempotency_key": f"batch-step-{n}",
        **extra,
    }


def settings_with(settings: Settings, per_message: int) -> Settings:
    pipeline = settings.pipeline.model_copy(update={"steps_per_message": per_message})
    return settings.model_copy(update={"pipeline": pipeline})


def queued(client: redis.Redis) -> list[tuple[str, dict[str, Any], str]]:
    """(task name, kwargs, kwargsrepr) of each message on the queue, oldest first."""
    out = []
    for raw in reversed(client.lrange(QUEUE, 0, -1)):
        message = json.loads(raw)
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        out.append((message["headers"]["task"], kwargs, message["headers"]["kwargsrepr"]))
    return out


def sent_once(control: SandboxControl, count: int) -> Counter[str | None]:
    wait_until(lambda: control.stats().sends_accepted >= count, timeout_s=90, what="sends")
    return Counter(m.tracking_id for m in control.messages())


def test_bulk_enqueue_puts_ten_steps_in_a_message_and_a_lone_rest_as_a_single_step(
    settings: Settings, client: redis.Redis
) -> None:
    # When 21 valid steps are enqueued in bulk with 10 steps per message (no worker running)
    client.delete(QUEUE)
    report = Producer(settings_with(settings, 10)).enqueue_many(
        [job(n) for n in range(21)], lane="realtime"
    )
    # Then the queue holds two batches of 10 and one single-step message, in order
    messages = queued(client)
    assert [name for name, _, _ in messages] == [BATCH_TASK_NAME, BATCH_TASK_NAME, TASK_NAME]
    batch_ids = [s["id"] for _, kwargs, _ in messages[:2] for s in kwargs["steps"]]
    assert batch_ids == report.task_ids[:20]
    assert messages[2][1]["idempotency_key"] == "batch-step-20"
    # And what Celery, Flower and logs show of a batch is its step ids, never a phone
    for _, kwargs, shown in messages[:2]:
        assert "0900000" not in shown and "steps" in shown
        assert all(s["id"] in shown for s in kwargs["steps"])
    client.delete(QUEUE)


def test_one_step_per_message_keeps_the_single_step_format(
    settings: Settings, client: redis.Redis
) -> None:
    client.delete(QUEUE)
    Producer(settings_with(settings, 1)).enqueue_many([job(n) for n in range(3)], lane="realtime")
    assert [name for name, _, _ in queued(client)] == [TASK_NAME] * 3
    client.delete(QUEUE)


def test_each_batched_step_is_sent_once_with_its_own_result(
    settings: Settings, start_worker: StartWorker, control: SandboxControl
) -> None:
    # Given a worker, and 35 steps enqueued in bulk (4 messages)
    start_worker(concurrency=4)
    producer = Producer(settings_with(settings, 10))
    report = producer.enqueue_many([job(n) for n in range(35)])
    # Then each step is sent once and its own result is readable by its own task id
    per_tracking = sent_once(control, 35)
    assert len(per_tracking) == 35 and max(per_tracking.values()) == 1
    results = [producer.app.AsyncResult(t).get(timeout=30) for t in report.task_ids]
    assert [r["status"] for r in results] == ["sent"] * 35
    assert {r["tracking_id"] for r in results} == set(per_tracking)
    assert control.stats().journey_tokens_created == 7


def test_a_batch_delivered_again_sends_nothing_twice(
    settings: Settings, start_worker: StartWorker, control: SandboxControl
) -> None:
    # Given one batch message, published twice (as after a worker died holding it)
    app = create_celery(settings)
    steps = [(str(uuid.uuid4()), job(n)) for n in range(6)]
    publish_batch(app, steps)
    start_worker(concurrency=2)
    sent_once(control, 6)
    publish_batch(app, steps)
    # Then the second delivery finds every step already sent: nothing goes to Zalo again
    ids = [task_id for task_id, _ in steps]
    wait_until(
        lambda: all(app.AsyncResult(t).state == "SUCCESS" for t in ids), timeout_s=30, what="done"
    )
    publish_batch(app, [(str(uuid.uuid4()), job(99))])  # a marker behind the repeat
    sent_once(control, 7)
    assert control.stats().sends_accepted == 7


def test_a_bad_step_is_dead_lettered_and_the_others_are_sent(
    settings: Settings, start_worker: StartWorker, control: SandboxControl, runtime: Runtime
) -> None:
    # Given a batch whose middle step has no template id (a producer that skipped validation)
    app = create_celery(settings)
    bad = {k: v for k, v in job(2).items() if k != "template_id"}
    steps = [(str(uuid.uuid4()), job(1)), (str(uuid.uuid4()), bad), (str(uuid.uuid4()), job(3))]
    publish_batch(app, steps)
    start_worker(concurrency=2)
    # Then the good steps are sent and the bad one waits in the dead letters, with its reason
    sent_once(control, 2)
    results = [app.AsyncResult(task_id).get(timeout=30) for task_id, _ in steps]
    assert [r["status"] for r in results] == ["sent", "dead_lettered", "sent"]
    assert "template_id" in results[1]["reason"]
    (entry,) = runtime.dead_letters.entries()
    assert entry.task_id == steps[1][0] and entry.error_class == "invalid_job"


def test_a_malformed_batch_message_is_dead_lettered_whole(
    settings: Settings, start_worker: StartWorker, runtime: Runtime
) -> None:
    app = Celery(broker=settings.redis_url)
    app.send_task(BATCH_TASK_NAME, kwargs={"steps": "not a list"}, queue=QUEUE)
    start_worker(concurrency=2)
    wait_until(lambda: len(runtime.dead_letters.entries()) == 1, timeout_s=30, what="dead letter")
    (entry,) = runtime.dead_letters.entries()
    assert "steps" in entry.reason


def test_a_step_zalo_refuses_for_now_leaves_the_batch_and_is_sent_later(
    settings: Settings, start_worker: StartWorker, control: SandboxControl
) -> None:
    # Given Zalo answering 502 to 40% of sends
    control.set_faults(fault_5xx=0.4, fault_endpoints=["send"])
    start_worker(concurrency=4)
    producer = Producer(settings_with(settings, 10))
    # When 20 steps are enqueued in bulk (two messages)
    report = producer.enqueue_many([job(n) for n in range(20)])
    # Then the refused steps went out again alone, and each step was sent exactly once
    per_tracking = sent_once(control, 20)
    assert len(per_tracking) == 20 and max(per_tracking.values()) == 1
    assert control.stats().calls["send"] > 20  # some sends were refused and retried
    results = [producer.app.AsyncResult(t).get(timeout=60) for t in report.task_ids]
    assert [r["status"] for r in results] == ["sent"] * 20


def test_a_batch_past_its_time_limit_hands_its_remaining_steps_on(
    settings: Settings, start_worker: StartWorker, control: SandboxControl
) -> None:
    # Given a slow Zalo (1.5 s a call) and a 5 s soft time limit
    control.set_faults(latency_ms=1500)
    worker = start_worker(
        concurrency=2,
        ZNS_CELERY__SOFT_TIME_LIMIT_S="5",
        ZNS_CELERY__TIME_LIMIT_S="10",
        ZNS_PIPELINE__CLAIM_TTL_S="20",
        ZNS_PIPELINE__TOKEN_WAIT_S="2",
        ZNS_PIPELINE__RATE_MAX_WAIT_S="1",
    )
    # When one batch of 6 steps of one journey arrives (one get-token, then 6 sends: ~10 s)
    app = create_celery(settings)
    steps = [(str(uuid.uuid4()), {**job(n), "journey": "slow", "phone": PHONE}) for n in range(6)]
    publish_batch(app, steps)
    # Then the steps not started within 5 s went on as a new batch, and all are sent once
    per_tracking = sent_once(control, 6)
    assert len(per_tracking) == 6 and max(per_tracking.values()) == 1
    assert "batch past its time limit" in worker.log()


def test_a_step_whose_token_another_batch_is_creating_waits_at_the_end_of_its_batch(
    settings: Settings, start_worker: StartWorker, control: SandboxControl
) -> None:
    # Given a slow Zalo, and two batches each holding steps 1 and 2 of the same new journey
    control.set_faults(latency_ms=1000)
    app = create_celery(settings)
    shared = {"phone": PHONE, "journey": "shared"}

    def batch(first: int) -> list[tuple[str, dict[str, Any]]]:
        return [
            (str(uuid.uuid4()), {**job(first), **shared}),
            (str(uuid.uuid4()), job(first + 1)),
            (str(uuid.uuid4()), job(first + 2)),
        ]

    worker = start_worker(concurrency=2)
    # When the second batch starts while the first is making the token
    publish_batch(app, batch(0))
    time.sleep(0.3)
    publish_batch(app, batch(10))
    # Then one journey token is made for the shared journey, each step is sent once, and the
    # batch that found the token being made went on with its other steps first
    per_tracking = sent_once(control, 6)
    assert len(per_tracking) == 6 and max(per_tracking.values()) == 1
    assert len({m.journey_id for m in control.messages("84987654321")}) == 1
    assert "deferred to the end of its batch" in worker.log()
