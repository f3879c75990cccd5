"""Status, callbacks, the journey view and ordering through real workers, the sandbox over HTTP
and the `zns` command line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import signature

from tests.integration.callback_app import CALLBACK_QUEUE, CALLBACK_TASK, RESULTS_KEY
from tests.integration.zns_cli import run_zns
from tests.support import WorkerProcess, wait_until
from worker.producer import Producer
from worker.runtime import Runtime
from worker.settings import Settings
from worker.status import Lookup, StepState
from zns_dev.sandbox.control import SandboxControl

StartWorker = Callable[..., WorkerProcess]
PHONE = "0987654321"
NORMALISED = "84987654321"


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    made = Producer(settings)
    yield made
    made.close()


def finished(runtime: Runtime, key: str) -> bool:
    found = runtime.status.get("default", key)
    return found is not None and found.state in {StepState.SENT, StepState.DEAD_LETTERED}


def test_status_shows_sent_and_dead_lettered_by_each_lookup(
    producer: Producer,
    runtime: Runtime,
    start_worker: StartWorker,
    control: SandboxControl,
    worker_env: dict[str, str],
) -> None:
    # Given a worker, and a recipient Zalo refuses
    start_worker(concurrency=4)
    control.script(-108, endpoint="send", phone="84912345678")
    # When two steps are enqueued: one goes out, one is dead-lettered
    common: dict[str, Any] = {"template_id": "500", "template_data": {"a": 1}}
    producer.enqueue(phone=PHONE, idempotency_key="ORD-7-shipped", journey="ORD-7", **common)
    producer.enqueue(phone="0912345678", idempotency_key="ORD-8-shipped", **common)
    enqueued = producer.status("ORD-7-shipped")
    assert enqueued is not None  # recorded before the publish
    wait_until(
        lambda: finished(runtime, "ORD-7-shipped") and finished(runtime, "ORD-8-shipped"),
        timeout_s=60,
        what="both steps finished",
    )
    # Then the producer API finds the sent one by idempotency key, tracking id and msg_id
    (message,) = control.messages()
    sent = producer.status("ORD-7-shipped")
    assert sent is not None and sent.state == StepState.SENT
    assert sent.get("msg_id") == message.msg_id
    assert sent.get("journey_id") == message.journey_id
    assert sent.get("sent_at_ms") == str(message.sent_time_ms)
    assert sent.get("enqueued_at_ms") is not None
    assert producer.status(message.msg_id, by=Lookup.MSG_ID) == sent
    assert producer.status(str(message.tracking_id), by=Lookup.TRACKING_ID) == sent
    # And the dead-lettered one with its reason
    dead = producer.status("ORD-8-shipped")
    assert dead is not None and dead.state == StepState.DEAD_LETTERED
    assert dead.get("dead_code") == "-108"
    assert dead.get("dead_reason")
    # And `zns status` prints the same, as JSON or as a table; unknown keys exit 1
    shown = run_zns(worker_env, "status", message.msg_id, "--by", "msg-id", "--json")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["state"] == "sent"
    assert body["msg_id"] == message.msg_id
    assert body["idempotency_key"] == "ORD-7-shipped"
    assert body["phone"] == "8498****321"
    assert NORMALISED not in shown.stdout
    table = run_zns(worker_env, "status", "ORD-8-shipped")
    assert table.returncode == 0, table.stderr
    assert "dead_lettered" in table.stdout and "-108" in table.stdout
    missing = run_zns(worker_env, "status", "no-such-key", "--by", "tracking-id")
    assert missing.returncode == 1
    assert "no status recorded" in missing.stderr


@pytest.fixture
def callback_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    """The producer's own worker, running its callback task on its own queue."""
    process = WorkerProcess(
        worker_env,
        tmp_path / "callbacks.log",
        concurrency=2,
        name="cb",
        app="tests.integration.callback_app",
        queue=CALLBACK_QUEUE,
    ).start()
    yield process
    process.stop()


@pytest.mark.usefixtures("callback_worker")
def test_a_linked_task_receives_the_result(
    producer: Producer, start_worker: StartWorker, control: SandboxControl, redis_url: str
) -> None:
    # Given our worker, and the producer's own worker for its callback task
    start_worker(concurrency=4)
    # When one step is enqueued alone and two in bulk, each with a link
    link = signature(CALLBACK_TASK, queue=CALLBACK_QUEUE)
    common: dict[str, Any] = {"phone": PHONE, "template_id": "500", "template_data": {"a": 1}}
    producer.enqueue(link=link, idempotency_key="cb-1", **common)
    producer.enqueue_many([{**common, "idempotency_key": f"cb-{n}"} for n in (2, 3)], link=link)
    # Then the callback task gets each step's result dict
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    wait_until(lambda: client.llen(RESULTS_KEY) == 3, timeout_s=60, what="3 callbacks")
    results = [json.loads(item) for item in client.lrange(RESULTS_KEY, 0, -1)]
    client.close()
    assert {r["status"] for r in results} == {"sent"}
    assert {r["msg_id"] for r in results} == {m.msg_id for m in control.messages()}
    assert all(r["tracking_id"] and r["journey_id"] for r in results)


def test_journey_show_never_prints_the_token(
    producer: Producer,
    runtime: Runtime,
    start_worker: StartWorker,
    control: SandboxControl,
    worker_env: dict[str, str],
) -> None:
    # Given two steps of a journey sent, one delivered, and the journey charged
    start_worker(concurrency=4)
    for n in (1, 2):
        producer.enqueue(
            phone=PHONE,
            template_id="500",
            template_data={"n": n},
            journey="ORD-9",
            idempotency_key=f"ORD-9-{n}",
            step=n,
        )
    wait_until(lambda: control.stats().sends_accepted == 2, timeout_s=60, what="2 sends")
    wait_until(lambda: finished(runtime, "ORD-9-2"), timeout_s=10, what="recorded")
    first = next(m for m in control.messages() if m.template_data == {"n": 1})
    assert runtime.status.mark_delivered("default", first.msg_id, first.sent_time_ms + 900, None)
    runtime.status.mark_journey_event("default", first.journey_id, "charged", 1_800_000_000_000)
    # When an operator looks at the journey
    shown = run_zns(worker_env, "journey", "show", "--phone", PHONE, "--journey", "ORD-9", "--json")
    # Then it shows the token's journey id, type and times, the steps, and the charge
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    (token,) = body["tokens"]
    assert token["journey_id"] == first.journey_id
    assert token["token_type"] == "token_logistics_7"
    assert token["expires_at_ms"] - token["created_at_ms"] == 7 * 86_400_000
    assert body["steps_sent"] == 2
    assert body["steps_delivered"] == 1
    assert body["charged"] is True
    assert [s["step"] for s in body["steps"]] == [1, 2]
    assert [s["state"] for s in body["steps"]] == ["delivered", "sent"]
    (stored,) = control.journey_tokens()
    table = run_zns(worker_env, "journey", "show", "--phone", PHONE, "--journey", "ORD-9")
    assert table.returncode == 0, table.stderr
    assert "charged yes" in table.stdout and first.journey_id in table.stdout
    for output in (shown.stdout, table.stdout):
        assert stored.token not in output
        assert NORMALISED not in output
    unknown = run_zns(worker_env, "journey", "show", "--phone", PHONE, "--journey", "nothing")
    assert unknown.returncode == 1


def test_steps_enqueued_in_reverse_are_sent_in_order_despite_a_transient_failure(
    producer: Producer, runtime: Runtime, start_worker: StartWorker, control: SandboxControl
) -> None:
    # Given two workers, and Zalo failing step 1's first send with a transient error
    start_worker(concurrency=8)
    start_worker(concurrency=8)
    control.script(-100, endpoint="send", template_id="T1")
    # When steps 3, 2, 1 of one journey are enqueued in that order
    producer.enqueue_many(
        [
            {
                "phone": PHONE,
                "template_id": f"T{n}",
                "template_data": {"n": n},
                "journey": "ORD-REV",
                "idempotency_key": f"ORD-REV-{n}",
                "step": n,
            }
            for n in (3, 2, 1)
        ]
    )
    # Then Zalo receives them in the order 1, 2, 3, step 1 after one retry
    wait_until(lambda: control.stats().sends_accepted == 3, timeout_s=90, what="3 sends")
    assert [m.template_id for m in control.messages()] == ["T1", "T2", "T3"]
    assert control.stats().errors.get(-100) == 1
    assert runtime.parking.count("default") == 0
    states = [s.state for s in runtime.status.journey("default", NORMALISED, "ORD-REV")]
    assert states == ["sent", "sent", "sent"]
