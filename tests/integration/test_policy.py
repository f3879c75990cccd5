"""Error policy, idempotency and malformed input, end to end with real workers and the sandbox."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from kombu import Connection, Exchange, Queue

from tests.support import WorkerProcess, wait_until
from worker.messaging.names import QUEUE, TASK_NAME
from worker.ops.actions import resume_account
from worker.producer import Producer
from worker.runtime import Runtime
from worker.settings import Settings
from zns_dev.sandbox.control import SandboxControl

StartWorker = Callable[..., WorkerProcess]
PHONE = "84987654321"


def job(step: int, **extra: object) -> dict[str, object]:
    return {
        "phone": PHONE,
        "template_id": "300",
        "template_data": {"order_code": "A1", "step": step},
        "journey": "order-A1",
        **extra,
    }


def test_same_task_delivered_twice_and_same_key_reenqueued_send_once(
    settings: Settings, start_worker: StartWorker, control: SandboxControl
) -> None:
    start_worker(concurrency=8)
    producer = Producer(settings)
    # Given one message delivered twice (what a broker redelivery looks like: same task id)
    task_id = str(uuid.uuid4())
    for _ in range(2):
        producer.app.send_task(TASK_NAME, kwargs=job(1), queue=QUEUE, task_id=task_id)
    # And a producer enqueueing the same idempotency key twice (two task ids)
    first = producer.enqueue(**job(2, idempotency_key="invoice-2026-11-A1"))
    second = producer.enqueue(**job(2, idempotency_key="invoice-2026-11-A1"))
    # Then each is sent once; the repeat answers "duplicate" with the stored result
    wait_until(lambda: control.stats().sends_accepted >= 2, timeout_s=60, what="2 sends")
    results = [producer.app.AsyncResult(t).get(timeout=60) for t in (first, second)]
    assert sorted(r["status"] for r in results) == ["duplicate", "sent"]
    assert results[0]["msg_id"] == results[1]["msg_id"]
    wait_until(lambda: control.stats().calls.get("send", 0) >= 2, timeout_s=10)
    assert control.stats().sends_accepted == 2
    assert control.stats().calls["send"] == 2


def test_journey_token_rejected_mid_journey_gets_one_new_token(
    settings: Settings, start_worker: StartWorker, control: SandboxControl
) -> None:
    start_worker(concurrency=4)
    producer = Producer(settings)
    # Given a journey whose first step went out with a token
    producer.app.AsyncResult(producer.enqueue(**job(1))).get(timeout=60)
    assert control.stats().journey_tokens_created == 1
    # When Zalo answers -149 (invalid journey token) to the next send
    control.script(-149, endpoint="send", phone=PHONE)
    result = producer.app.AsyncResult(producer.enqueue(**job(2))).get(timeout=60)
    # Then exactly one new token is created and the step is sent
    assert result["status"] == "sent"
    stats = control.stats()
    assert stats.journey_tokens_created == 2
    assert stats.sends_accepted == 2
    assert stats.errors[-149] == 1


def test_invalid_recipient_is_dead_lettered_without_retry(
    settings: Settings, start_worker: StartWorker, control: SandboxControl, runtime: Runtime
) -> None:
    start_worker(concurrency=4)
    producer = Producer(settings)
    # Given Zalo will say -108 (phone invalid) for this phone
    control.script(-108, endpoint="send", phone=PHONE, times=5)
    result = producer.app.AsyncResult(producer.enqueue(**job(1))).get(timeout=60)
    # Then the step is dead-lettered after a single call, with the code and the full job
    assert result["status"] == "dead_lettered"
    assert result["code"] == -108
    assert control.stats().calls["send"] == 1
    (entry,) = runtime.dead_letters.entries()
    assert entry.code == -108
    assert entry.error_class == "recipient"
    assert entry.kwargs["phone"] == PHONE
    assert entry.history and entry.history[-1]["code"] == -108


def test_account_problem_pauses_and_parks_then_resume_sends_everything(
    settings: Settings, start_worker: StartWorker, control: SandboxControl, runtime: Runtime
) -> None:
    start_worker(concurrency=4)
    producer = Producer(settings)
    # Given Zalo says -115 (balance insufficient) once
    control.script(-115, endpoint="send")
    first = producer.app.AsyncResult(producer.enqueue(**job(1))).get(timeout=60)
    assert first["status"] == "parked"
    assert runtime.accounts.status("default") is not None
    # When ten more steps arrive while the account is paused
    producer.enqueue_many([job(i) for i in range(2, 12)])
    wait_until(lambda: runtime.parking.count("default") == 11, timeout_s=60, what="11 parked")
    # Then none is sent and none dead-lettered
    assert control.stats().sends_accepted == 0
    assert runtime.dead_letters.count() == 0
    # When an operator resumes the account
    was_paused, released = resume_account(runtime, "default")
    assert was_paused and released == 11
    # Then all eleven go out
    wait_until(lambda: control.stats().sends_accepted == 11, timeout_s=60, what="11 sends")
    assert runtime.parking.count("default") == 0
    assert runtime.dead_letters.count() == 0


def test_malformed_messages_are_dead_lettered_and_the_worker_keeps_running(
    settings: Settings, start_worker: StartWorker, control: SandboxControl, runtime: Runtime
) -> None:
    worker = start_worker(concurrency=4)
    producer = Producer(settings)
    app = producer.app
    # Given malformed task messages: missing kwargs, wrong types, positional args
    bad = [
        app.send_task(TASK_NAME, kwargs={"phone": PHONE}, queue=QUEUE),
        app.send_task(
            TASK_NAME,
            kwargs={"phone": PHONE, "template_id": 1, "template_data": ["not", "an", "object"]},
            queue=QUEUE,
        ),
        app.send_task(TASK_NAME, args=[PHONE, 1], queue=QUEUE),
        app.send_task(
            TASK_NAME, kwargs={**job(1), "template_data": {"a": {"nested": 1}}}, queue=QUEUE
        ),
    ]
    # And a body that is not JSON at all
    with Connection(settings.effective_broker_url) as conn:
        conn.Producer().publish(
            b"{garbage, not json",
            exchange=Exchange(QUEUE),
            routing_key=QUEUE,
            declare=[Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE)],
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": TASK_NAME, "id": str(uuid.uuid4()), "lang": "py"},
        )
    for result in bad:
        assert result.get(timeout=60)["status"] == "dead_lettered"
    wait_until(lambda: runtime.dead_letters.count() == 5, timeout_s=30, what="5 dead letters")
    reasons = " | ".join(entry.reason for entry in runtime.dead_letters.entries())
    assert "template_id is required" in reasons
    assert "template_data" in reasons
    assert "positional arguments" in reasons
    assert "undecodable message" in reasons
    # Then the worker still sends a good job, and Zalo never saw a bad one
    assert producer.app.AsyncResult(producer.enqueue(**job(9))).get(timeout=60)["status"] == "sent"
    assert control.stats().calls.get("send", 0) == 1
    assert worker.process is not None and worker.process.poll() is None
