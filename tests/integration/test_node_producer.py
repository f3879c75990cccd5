"""A producer in a Node.js codebase: the npm package `celery-node` (tests/node, version pinned in
package.json and package-lock.json) publishes journey steps to the real broker (the private
redis-server) in Celery message protocol 2 (task name in the headers) and protocol 1 (task name
in the body), and reads the results back through its own Redis result backend.

The Node dependencies are installed once (the `node` fixture, tests/integration/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import NODE_DIR
from tests.support import WorkerProcess, wait_until
from worker.job import derive_tracking_id
from worker.messaging.names import QUEUE, TASK_NAME
from worker.runtime import Runtime
from worker.settings import Settings
from zns_dev.sandbox.control import SandboxControl

pytestmark = pytest.mark.integration

SCRIPT = NODE_DIR / "produce.mjs"
PRODUCER_TIMEOUT_S = 60
RESULT_TIMEOUT_MS = 20_000

PHONE = "0987 654 321"
PHONE_84 = "84987654321"
TEMPLATE_ID = 248791
#: An emoji's UTF-16 code units cut in half: what a JS string can hold and UTF-8 cannot encode.
LONE_SURROGATE_ID = "id-\ud83d"
#: kombu's Redis transport: messages delivered and not yet acked (the default key names).
UNACKED, UNACKED_INDEX = "unacked", "unacked_index"

StartWorker = Callable[..., WorkerProcess]
Produce = Callable[..., dict[str, Any]]


@pytest.fixture
def produce(node: str, settings: Settings) -> Produce:
    """Run tests/node/produce.mjs against the private Redis (broker and result backend)."""

    def run(steps: list[dict[str, Any]], timeout_ms: int = RESULT_TIMEOUT_MS) -> dict[str, Any]:
        spec = {"queue": QUEUE, "task": TASK_NAME, "timeout_ms": timeout_ms, "steps": steps}
        done = subprocess.run(
            [node, str(SCRIPT), settings.redis_url],
            cwd=NODE_DIR,
            input=json.dumps(spec),  # ASCII: a lone surrogate travels as a \ud83d escape
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=PRODUCER_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"node producer failed:\n{done.stderr[-3000:]}"
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    return run


def journey_step(key: str, amount: int = 150000) -> dict[str, Any]:
    """kwargs of one step of order 42's journey, as a Node app would write them."""
    return {
        "phone": PHONE,
        "template_id": TEMPLATE_ID,
        "template_data": {"customer_name": "Nguyễn Văn An", "amount": amount},
        "journey": "ORDER-42",
        "idempotency_key": key,
    }


def assert_wire_format(step: dict[str, Any], protocol: int, kwargs: dict[str, Any]) -> None:
    """What celery-node pushed on the `zns` list is the protocol asked for, in kombu's envelope."""
    published = step["published"]
    envelope, body = published["envelope"], published["body"]
    assert published["queue"] == QUEUE
    assert envelope["content-type"] == "application/json"
    assert envelope["properties"]["body_encoding"] == "base64"
    assert envelope["properties"]["delivery_info"] == {"exchange": "", "routing_key": QUEUE}
    if protocol == 2:
        assert envelope["headers"] == {"lang": "js", "task": TASK_NAME, "id": step["task_id"]}
        assert body == [[], kwargs, {}]
    else:
        assert envelope["headers"] == {}
        assert body == {"task": TASK_NAME, "id": step["task_id"], "args": [], "kwargs": kwargs}


@pytest.mark.parametrize("protocol", [2, 1], ids=["protocol-2", "protocol-1"])
def test_celery_node_steps_are_sent_once_each_and_node_reads_the_results(
    protocol: int,
    produce: Produce,
    start_worker: StartWorker,
    control: SandboxControl,
) -> None:
    start_worker(concurrency=4)
    jobs = [journey_step(f"ORDER-42-p{protocol}-{n}", amount=150000 * n) for n in (1, 2, 3)]

    report = produce([{"protocol": protocol, "kwargs": kwargs} for kwargs in jobs])

    assert report["celery_node_version"] == "0.5.9"
    steps = report["steps"]
    assert len(steps) == len(jobs)
    for step, kwargs in zip(steps, jobs, strict=True):
        assert_wire_format(step, protocol, kwargs)
        assert step["state"] == "SUCCESS", step
        assert step["result"]["status"] == "sent", step
        assert step["result"]["tracking_id"] == derive_tracking_id(kwargs["idempotency_key"])
    # One journey: one journey token for its three steps.
    assert len({step["result"]["journey_id"] for step in steps}) == 1
    assert len(control.journey_tokens()) == 1
    # Exactly one message per step at the sandbox, the one Node was told about.
    wait_until(lambda: control.stats().sends_accepted >= len(jobs), timeout_s=10, what="sends")
    messages = control.messages()
    by_tracking = {m.tracking_id: m for m in messages}
    assert Counter(m.tracking_id for m in messages) == Counter(
        derive_tracking_id(kwargs["idempotency_key"]) for kwargs in jobs
    )
    for step, kwargs in zip(steps, jobs, strict=True):
        message = by_tracking[step["result"]["tracking_id"]]
        assert message.msg_id == step["result"]["msg_id"]
        assert message.phone == PHONE_84
        assert message.template_id == str(TEMPLATE_ID)
        assert message.template_data == kwargs["template_data"]  # Vietnamese text intact


def test_the_same_step_in_protocol_2_then_1_is_sent_once(
    produce: Produce, start_worker: StartWorker, control: SandboxControl
) -> None:
    start_worker(concurrency=4)
    kwargs = journey_step("ORDER-42-shipped")

    report = produce([{"protocol": 2, "kwargs": kwargs}, {"protocol": 1, "kwargs": kwargs}])

    first, second = report["steps"]
    assert first["task_id"] != second["task_id"]
    assert (first["state"], second["state"]) == ("SUCCESS", "SUCCESS")
    assert (first["result"]["status"], second["result"]["status"]) == ("sent", "duplicate")
    assert second["result"]["msg_id"] == first["result"]["msg_id"]
    (message,) = control.messages()
    assert message.msg_id == first["result"]["msg_id"]
    assert message.tracking_id == derive_tracking_id("ORDER-42-shipped")


def surrogate_outcome(runtime: Runtime, control: SandboxControl, key: str) -> str | None:
    """'dead' when a dead letter holds the step, 'sent' when the sandbox has it, else None."""
    for entry in runtime.dead_letters.entries(limit=1000):
        text = json.dumps([entry.task_id, entry.kwargs, entry.idempotency_key], default=str)
        if key in text:
            return "dead"
    if any(m.tracking_id == derive_tracking_id(key) for m in control.messages()):
        return "sent"
    return None


@pytest.mark.parametrize("protocol", [2, 1], ids=["protocol-2", "protocol-1"])
def test_a_task_id_with_a_lone_surrogate_is_dead_lettered_or_sent_and_the_worker_lives_on(
    protocol: int,
    produce: Produce,
    start_worker: StartWorker,
    control: SandboxControl,
    runtime: Runtime,
) -> None:
    worker = start_worker(concurrency=4)
    key = f"ORDER-42-surrogate-p{protocol}"
    after = journey_step(f"ORDER-42-after-p{protocol}")

    report = produce(
        [
            # No result to wait for: Node would look it up under the id's UTF-8 with U+FFFD.
            {
                "protocol": protocol,
                "task_id": LONE_SURROGATE_ID,
                "kwargs": journey_step(key),
                "wait": False,
            },
            {"protocol": protocol, "kwargs": after},  # then a sound step: still consumed?
        ]
    )

    odd, sound = report["steps"]
    assert odd["task_id"] == LONE_SURROGATE_ID
    assert odd["task_id_well_formed"] is False  # a real JS string with half an emoji
    assert "\\ud83d" in odd["published"]["raw"]  # JSON.stringify escapes it on the wire
    assert worker.process is not None
    assert worker.process.poll() is None, f"worker died:\n{worker.log()[-4000:]}"
    assert sound["state"] == "SUCCESS", f"{sound}\n{worker.log()[-4000:]}"
    assert sound["result"]["status"] == "sent"
    outcome: list[str | None] = [None]

    def settled() -> bool:
        outcome[0] = surrogate_outcome(runtime, control, key)
        return outcome[0] is not None

    wait_until(settled, timeout_s=10, what="the lone-surrogate step dead-lettered or sent")
    # ... and its message settled: acked, not left in kombu's unacked hash (where only a restore
    # after the visibility timeout would ever move it) nor requeued. (The broker is the state
    # Redis here: no ZNS_BROKER_URL.)
    client = runtime.redis

    def pending() -> dict[str, Any]:
        return {
            QUEUE: client.llen(QUEUE),
            UNACKED: client.hgetall(UNACKED),
            UNACKED_INDEX: client.zcard(UNACKED_INDEX),
        }

    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not any(pending().values()), timeout_s=10)
    assert not any(pending().values()), f"messages not settled: {pending()}"
    sends = Counter(m.tracking_id for m in control.messages())
    assert sends[derive_tracking_id(after["idempotency_key"])] == 1
    assert sends[derive_tracking_id(key)] == (1 if outcome[0] == "sent" else 0)
    assert worker.process.poll() is None, f"worker died:\n{worker.log()[-4000:]}"
