"""Delivery tracking end to end: the sandbox Zalo, a real worker sending, the sandbox's signed
webhooks, the real receiver over HTTP, and the status store it writes to."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from prometheus_client import REGISTRY

from tests.integration.zns_cli import run_zns
from tests.support import WorkerProcess, wait_until
from worker.producer import Producer
from worker.runtime import Runtime
from worker.settings import Settings
from worker.state.step_status import StatusStore
from worker.status import Lookup
from worker.webhooks.server import running_receiver
from zns_dev.sandbox.control import SandboxControl

StartWorker = Callable[..., WorkerProcess]
JOURNEYS = 3
STEPS = 3


def accepted(event: str) -> float:
    labels = {"event": event, "outcome": "accepted"}
    return REGISTRY.get_sample_value("zns_webhook_events_total", labels) or 0.0


@pytest.fixture
def hook_url(settings: Settings, control: SandboxControl) -> Iterator[str]:
    """The receiver in this process, and the sandbox pointed at it."""
    with running_receiver(settings) as url:
        control.set_webhook(url, delay_ms=100)
        yield url


def test_every_step_sent_by_the_worker_is_recorded_delivered(
    settings: Settings,
    start_worker: StartWorker,
    control: SandboxControl,
    hook_url: str,
    runtime: Runtime,
) -> None:
    # Given a worker, and the sandbox sending its webhooks to our receiver
    start_worker(concurrency=8)
    delivered_before = accepted("user_received_message")
    charged_before = accepted("event_journey_acknowledged")
    # When 3 journeys of 3 steps are enqueued
    jobs = [
        {
            "phone": f"09{j:08d}",
            "template_id": f"20{step}",
            "template_data": {"order_code": f"ORD-{j}", "step": step},
            "journey": f"order-{j}",
        }
        for j in range(JOURNEYS)
        for step in range(STEPS)
    ]
    Producer(settings).enqueue_many(jobs)
    # Then each message's delivery, and each journey's charge, reached the receiver once
    total = JOURNEYS * STEPS
    wait_until(
        lambda: len(control.webhooks()) == total + JOURNEYS, timeout_s=90, what="all webhooks"
    )
    records = control.webhooks()
    assert all(record.delivered and record.attempts == 1 for record in records), records
    messages = control.messages()
    deliveries = {r.subject for r in records if r.event_name == "user_received_message"}
    assert deliveries == {m.msg_id for m in messages}
    charged = {r.subject for r in records if r.event_name == "event_journey_acknowledged"}
    assert charged == {m.journey_id for m in messages}
    assert accepted("user_received_message") - delivered_before == total
    assert accepted("event_journey_acknowledged") - charged_before == JOURNEYS
    # and the status of every step says delivered, at the sandbox's delivery time
    status = StatusStore(
        runtime.redis,
        runtime.keys,
        clock=lambda: 0.0,
        retention_s=settings.pipeline.idempotency_retention_s,
    )
    for message in messages:
        step = status.get("default", message.msg_id, Lookup.MSG_ID)
        assert step is not None and step.state == "delivered", (message.msg_id, step)
        assert step.get("tracking_id") == message.tracking_id
        assert int(step.get("delivered_at_ms") or 0) >= message.sent_time_ms
    # and `zns status` shows each step delivered, found by its msg_id
    for message in messages:
        shown = run_zns({"ZNS_REDIS_URL": settings.redis_url}, "status", message.msg_id,
                        "--by", "msg-id", "--json")  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["state"] == "delivered"
    # and every journey is charged
    events = status.journey_events("default", charged)
    assert set(events) == charged
    assert all("charged_at_ms" in event for event in events.values())


def test_quota_changes_and_journey_time_outs_reach_our_stores(
    settings: Settings, control: SandboxControl, hook_url: str, runtime: Runtime, sandbox_url: str
) -> None:
    # Given our quota counter at 999,400 of the sandbox's 1,000,000 (600 used today)
    runtime.quota.set("default", 999_400, 1_000_000)
    # and a journey token of 7 days
    with httpx.Client(base_url=sandbox_url, timeout=10) as http:
        answer = http.post(
            "/journey/get-token",
            json={"phone": "84987654321"},
            headers={"access_token": "sandbox-access-token"},
        ).json()
    # When Zalo lowers the daily quota to 2,000, and 8 days pass
    control.set_quota(2000)
    control.advance_clock(8 * 86_400)
    # Then our counter keeps the 600 used: 1,400 left of 2,000
    wait_until(lambda: len(control.webhooks()) == 2, timeout_s=30, what="two webhooks")
    assert all(record.delivered for record in control.webhooks())
    view = runtime.quota.view("default")
    assert (view.remaining, view.daily) == (1400, 2000)
    # and the journey is recorded as timed out
    status = StatusStore(
        runtime.redis,
        runtime.keys,
        clock=lambda: 0.0,
        retention_s=settings.pipeline.idempotency_retention_s,
    )
    events = status.journey_events("default", [answer["journey_id"]])
    assert "timed_out_at_ms" in events[answer["journey_id"]]
