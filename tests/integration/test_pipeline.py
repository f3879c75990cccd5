"""The journey-step pipeline end to end: real Redis, the sandbox over HTTP, real Celery workers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from tests.support import WorkerProcess, wait_until
from worker.producer import Producer
from worker.runtime import Runtime
from worker.settings import Settings
from zns_dev.sandbox.control import SandboxControl

StartWorker = Callable[..., WorkerProcess]


def phone_of(index: int) -> str:
    return f"09{index:08d}"


def steps(journeys: int, per_journey: int) -> list[dict[str, object]]:
    jobs: list[dict[str, object]] = []
    for j in range(journeys):
        for step in range(per_journey):
            jobs.append(
                {
                    "phone": phone_of(j),
                    "template_id": f"10{step}",
                    "template_data": {"order_code": f"ORD{j:05d}", "step": step + 1},
                    "journey": f"order-{j}",
                }
            )
    return jobs


def test_200_steps_over_50_journeys_send_once_with_one_token_per_journey(
    settings: Settings, start_worker: StartWorker, control: SandboxControl
) -> None:
    # Given two worker processes
    start_worker(concurrency=16)
    start_worker(concurrency=16)
    # When a producer enqueues 4 steps for each of 50 journeys
    report = Producer(settings).enqueue_many(steps(50, 4))
    assert len(report.task_ids) == 200
    # Then every step is sent once, with exactly one journey token per journey
    wait_until(lambda: control.stats().sends_accepted >= 200, timeout_s=120, what="200 sends")
    messages = control.messages()
    assert len(messages) == 200
    per_tracking = Counter(m.tracking_id for m in messages)
    assert max(per_tracking.values()) == 1
    stats = control.stats()
    assert stats.journey_tokens_created == 50
    assert stats.duplicate_tracking_ids == 0
    journeys_by_phone = {m.phone: {m.journey_id} for m in messages}
    for m in messages:
        journeys_by_phone[m.phone].add(m.journey_id)
    assert all(len(ids) == 1 for ids in journeys_by_phone.values())


def test_results_carry_the_contract_fields(
    settings: Settings, start_worker: StartWorker, control: SandboxControl, runtime: Runtime
) -> None:
    start_worker(concurrency=4)
    producer = Producer(settings)
    task_id = producer.enqueue(
        phone="+84 987 654 321", template_id=248791, template_data={"name": "An"}, journey="o-1"
    )
    result = producer.app.AsyncResult(task_id).get(timeout=60)
    assert result["status"] == "sent"
    assert set(result) >= {"status", "msg_id", "sent_time", "journey_id", "tracking_id"}
    (message,) = control.messages()
    assert message.msg_id == result["msg_id"]
    assert message.tracking_id == result["tracking_id"]
    assert message.phone == "84987654321"


def test_50_simultaneous_steps_of_one_new_journey_create_exactly_one_token(
    settings: Settings, start_worker: StartWorker, control: SandboxControl
) -> None:
    # Given two worker processes with many threads, and a latency that widens any race
    control.set_faults(latency_ms=50)
    start_worker(concurrency=25)
    start_worker(concurrency=25)
    # When 50 steps of one brand-new journey arrive at once
    jobs = [
        {
            "phone": "0987654321",
            "template_id": "200",
            "template_data": {"step": i},
            "journey": "order-ONE",
            "idempotency_key": f"one-journey-{i}",
        }
        for i in range(50)
    ]
    Producer(settings).enqueue_many(jobs)
    # Then all 50 are sent with one journey token
    wait_until(lambda: control.stats().sends_accepted >= 50, timeout_s=120, what="50 sends")
    stats = control.stats()
    assert stats.journey_tokens_created == 1
    assert stats.calls["get-token"] == 1
    assert len({m.journey_id for m in control.messages()}) == 1


def test_daily_quota_100_with_150_jobs_parks_50_until_reset(
    settings: Settings, start_worker: StartWorker, control: SandboxControl, runtime: Runtime
) -> None:
    # Given a daily quota of 100
    control.set_quota(100)
    start_worker(concurrency=16)
    # When 150 steps are enqueued
    Producer(settings).enqueue_many(steps(75, 2))
    # Then exactly 100 are sent and 50 parked, and Zalo saw no send beyond the quota
    wait_until(lambda: runtime.parking.count("default") == 50, timeout_s=120, what="50 parked")
    stats = control.stats()
    assert stats.sends_accepted == 100
    assert stats.calls["send"] == 100
    assert stats.errors.get(-144, 0) == 0
    assert {job.reason.value for job in runtime.parking.entries("default")} == {"quota"}
    assert runtime.quota.view("default").remaining == 0
    # When the sandbox's quota resets
    control.reset_quota()
    # Then a quota probe notices and the 50 parked jobs go out
    wait_until(lambda: control.stats().sends_accepted == 150, timeout_s=60, what="150 sends")
    assert runtime.parking.count("default") == 0
    assert len({m.tracking_id for m in control.messages()}) == 150
    assert control.stats().calls["send"] == 150
