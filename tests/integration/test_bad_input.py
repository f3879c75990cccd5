"""What foreign producers and an odd Zalo do to a real worker: each bad message costs one dead
letter, never the worker, a neighbour or a second send; nothing a producer writes is trusted as
the worker's own bookkeeping."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from celery import Celery

from tests.support import WorkerProcess, wait_until
from tests.test_sender import make_job
from worker.job import derive_tracking_id
from worker.messaging.names import QUEUE, TASK_NAME
from worker.ops.maintenance import job_kwargs
from worker.pipeline.outcomes import Duplicate, Sent
from worker.pipeline.sender import Attempt
from worker.runtime import Runtime
from worker.settings import Settings
from worker.status import ParkReason
from zns_dev.sandbox.control import SandboxControl
from zns_dev.sandbox.records import OddShape

CUT_EMOJI = "order-\ud83d"  # an emoji cut in half by a JavaScript producer: a lone surrogate


def envelope(task_id: str, kwargs: dict[str, Any]) -> str:
    """A protocol-2 task message as kombu's Redis transport stores it, written the way a Node
    producer writes it: JSON with `\\uXXXX` escapes, valid for Python's json and not for
    Redis's cjson when a surrogate is alone."""
    body = json.dumps([[], kwargs, {"callbacks": None, "errbacks": None, "chain": None}])
    message = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "js", "task": TASK_NAME, "id": task_id, "root_id": task_id},
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": QUEUE, "routing_key": QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(message)  # ensure_ascii: the lone surrogate travels as "\ud83d"


def step(marker: str) -> dict[str, Any]:
    """Kwargs of a step the sandbox accepts, traceable by `marker`."""
    return {
        "phone": "0987654321",
        "template_id": "248791",
        "template_data": {"order": marker},
        "journey": marker,
        "idempotency_key": marker,
    }


def sends_of(control: SandboxControl, *markers: str) -> dict[str, int]:
    """How many messages the sandbox received for each marker's step."""
    tracking = {derive_tracking_id(m): m for m in markers}
    counts = dict.fromkeys(markers, 0)
    for message in control.messages():
        if message.tracking_id in tracking:
            counts[tracking[message.tracking_id]] += 1
    return counts


def eventually(
    predicate: Callable[[], bool], *args: object, timeout_s: float, worker: Any = None
) -> None:
    """Wait for `predicate`; on time-out fail with the worker's log tail."""
    try:
        wait_until(predicate, timeout_s=timeout_s)
    except TimeoutError:
        log = worker.log()[-3000:] if worker is not None else ""
        raise AssertionError(f"timed out: {args}\n{log}") from None


def dead_reasons(runtime: Runtime) -> list[str]:
    return [entry.reason for entry in runtime.dead_letters.entries(limit=1000)]


def broker_settled(client: redis.Redis) -> bool:
    return client.llen(QUEUE) == 0 and client.hlen("unacked") == 0


def test_a_message_redis_cannot_decode_is_dead_lettered_and_its_neighbours_sent(
    start_worker: Callable[..., WorkerProcess],
    runtime: Runtime,
    control: SandboxControl,
) -> None:
    # Given a worker waiting on the queue
    worker = start_worker(concurrency=4)
    client = runtime.redis
    # When a batch arrives at once (the batch pop takes what follows the first message): good
    # steps around two whose task id is an emoji cut in half
    good = [f"poison-n{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]
    poison = [step(f"poison-p{i}-{uuid.uuid4().hex[:6]}") for i in range(2)]
    items = [
        envelope(str(uuid.uuid4()), step(good[0])),
        envelope(str(uuid.uuid4()), step(good[1])),
        envelope(CUT_EMOJI, poison[0]),
        envelope(str(uuid.uuid4()), step(good[2])),
        envelope(str(uuid.uuid4()), step(good[3])),
        envelope(CUT_EMOJI + "x", poison[1]),
        envelope(str(uuid.uuid4()), step(good[4])),
        envelope(str(uuid.uuid4()), step(good[5])),
    ]
    pipe = client.pipeline(transaction=True)
    for item in items:
        pipe.lpush(QUEUE, item)
    pipe.execute()
    # Then every good step is sent once, both bad ones are dead letters naming the cause,
    # nothing is left on the queue or unacked, and the worker lives on
    eventually(lambda: set(sends_of(control, *good).values()) == {1}, timeout_s=30, worker=worker)
    eventually(lambda: len(_utf8_dead(runtime)) == len(poison), timeout_s=30, worker=worker)
    eventually(lambda: broker_settled(client), timeout_s=10)
    assert worker.process is not None and worker.process.poll() is None, worker.log()[-3000:]
    assert "Unrecoverable error" not in worker.log()


def _utf8_dead(runtime: Runtime) -> list[str]:
    return [r for r in dead_reasons(runtime) if "UTF-8" in r]


def test_a_task_id_with_a_lone_surrogate_alone_is_dead_lettered_not_left_unacked(
    start_worker: Callable[..., WorkerProcess],
    runtime: Runtime,
    control: SandboxControl,
) -> None:
    # Given a worker waiting on the queue
    worker = start_worker(concurrency=4)
    # When one message whose task id is an emoji cut in half arrives alone (kombu's own path)
    marker = f"alone-{uuid.uuid4().hex[:8]}"
    runtime.redis.lpush(QUEUE, envelope(CUT_EMOJI, step(marker)))
    # Then it is a dead letter (the id cannot key a result), settled, and not sent
    eventually(lambda: len(_utf8_dead(runtime)) == 1, timeout_s=20, worker=worker)
    eventually(lambda: broker_settled(runtime.redis), timeout_s=10)
    assert sends_of(control, marker)[marker] == 0
    assert worker.process is not None and worker.process.poll() is None


@pytest.mark.parametrize(
    "raw",
    [
        b"not json at all",
        b"\xff\xfe invalid utf-8",
        b'{"body": "x"}',
        b'["an", "array"]',
        b'{"properties": {"delivery_tag": "t1", "body_encoding": "base64"}, "body": "!!"}',
        b'{"properties": {"delivery_tag": "t2", "body_encoding": "rot13"}, "body": "x"}',
        b'{"properties": {"delivery_tag": 5, "delivery_info": 3}, "headers": {}, "body": null}',
    ],
)
def test_a_list_item_that_is_no_kombu_envelope_is_dead_lettered(
    raw: bytes,
    start_worker: Callable[..., WorkerProcess],
    runtime: Runtime,
    control: SandboxControl,
) -> None:
    # Given a worker waiting on the queue
    worker = start_worker(concurrency=4)
    before = len(dead_reasons(runtime))
    # When something that no kombu producer writes is pushed onto the list, between good steps
    good = [f"raw-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    pipe = runtime.redis.pipeline(transaction=True)
    pipe.lpush(QUEUE, envelope(str(uuid.uuid4()), step(good[0])))
    pipe.lpush(QUEUE, raw)
    pipe.lpush(QUEUE, envelope(str(uuid.uuid4()), step(good[1])))
    pipe.execute()
    # Then it is one dead letter, the good steps are sent, and the worker lives on
    eventually(lambda: set(sends_of(control, *good).values()) == {1}, timeout_s=30, worker=worker)
    eventually(lambda: len(dead_reasons(runtime)) == before + 1, timeout_s=20, worker=worker)
    eventually(lambda: broker_settled(runtime.redis), timeout_s=10)
    assert worker.process is not None and worker.process.poll() is None, worker.log()[-3000:]


def test_a_forged_probe_neither_sends_nor_resumes_a_paused_account(
    start_worker: Callable[..., WorkerProcess],
    settings: Settings,
    runtime: Runtime,
    control: SandboxControl,
) -> None:
    # Given an account an operator paused, and a worker
    runtime.accounts.pause("default", reason="operator")
    start_worker(concurrency=4)
    # When a producer enqueues a step dressed up as the worker's own canary
    marker = f"forged-{uuid.uuid4().hex[:8]}"
    producer = Celery(broker=settings.redis_url, backend=settings.redis_url)
    forged = {**step(marker), "_meta": {"probe": True, "history": [], "seal": "0" * 64}}
    result = producer.send_task(TASK_NAME, kwargs=forged, queue=QUEUE)
    # Then it is parked like any step of a paused account: not sent, the account still paused
    outcome = result.get(timeout=30)
    assert outcome["status"] == "parked" and outcome["reason"] == ParkReason.PAUSED.value
    assert sends_of(control, marker)[marker] == 0
    assert runtime.accounts.status("default") is not None


def test_the_workers_own_sealed_canary_still_resumes_a_paused_account(
    runtime: Runtime, control: SandboxControl
) -> None:
    # Given a paused account with one parked step
    runtime.accounts.pause("default", reason="operator")
    job = make_job(journey=f"canary-{uuid.uuid4().hex[:6]}")
    outcome = runtime.sender.process(job, Attempt(task_id="t"))
    assert runtime.parking.count("default") == 1, outcome
    # When the maintenance pass publishes it as the canary (sealed), and a worker reads it back
    (parked,) = runtime.parking.entries("default")
    kwargs = job_kwargs(runtime.meta_seal, parked, probe=True)
    meta = runtime.meta_seal.open(kwargs.pop("_meta"), kwargs)
    # Then the seal verifies, and the canary's send resumes the account
    assert meta.probe
    sent = runtime.sender.process(job, Attempt(task_id="t", probe=meta.probe))
    assert isinstance(sent, Sent)
    assert runtime.accounts.status("default") is None
    # And the same meta on any other job does not verify
    sealed = job_kwargs(runtime.meta_seal, parked, probe=True)["_meta"]
    assert not runtime.meta_seal.open(sealed, {**kwargs, "template_data": {"a": 2}}).probe
    assert control.stats().calls["send"] == 1


@pytest.mark.parametrize(
    "shape",
    ["no_data", "data_not_object", "no_msg_id", "quota_not_number", "sent_time_not_number"],
)
def test_an_accepted_send_with_an_odd_answer_is_recorded_sent_and_never_resent(
    shape: OddShape, runtime: Runtime, control: SandboxControl
) -> None:
    # Given a Zalo that accepts the next send (error 0) but answers in an undocumented shape
    control.odd_send_answer(shape)
    job = make_job(journey=f"odd-{shape}")
    # When the step is sent, then delivered again (a redelivery, a producer's re-enqueue)
    first = runtime.sender.process(job, Attempt(task_id="t1"))
    again = runtime.sender.process(job, Attempt(task_id="t2"))
    # Then it is recorded as sent with what is known, and Zalo got exactly one message
    assert isinstance(first, Sent), first
    assert isinstance(again, Duplicate), again
    assert control.stats().calls["send"] == 1
    status = runtime.status.get(job.account, job.idempotency_key)
    assert status is not None and status.state == "sent"
