"""Fair lanes end to end: a real worker, the sandbox over HTTP, producers we did and did not write.
Order and counts are asserted, never timings (those are `zns bench --only fairness`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from celery import Celery

from tests.support import WorkerProcess, wait_until
from worker.job import derive_tracking_id
from worker.messaging.names import QUEUE, TASK_NAME
from worker.producer import Producer
from worker.settings import Settings
from zns_dev.sandbox.control import SandboxControl

StartWorker = Callable[..., WorkerProcess]
RATE = 5  # the throttled account: 4.75 sends/s with the headroom
DIGIT = {"bulk": 1, "other": 2, "urgent": 3}  # each group's phones apart


def job(prefix: str, n: int, **extra: object) -> dict[str, object]:
    return {
        "phone": f"09{DIGIT[prefix]}{n:07d}",
        "template_id": "900",
        "template_data": {"n": n},
        "journey": f"{prefix}-{n}",
        "idempotency_key": f"{prefix}-{n}",
        **extra,
    }


def test_another_accounts_steps_and_a_realtime_step_overtake_a_throttled_backlog(
    settings: Settings, start_worker: StartWorker, control: SandboxControl
) -> None:
    # Given account default limited to 5/s with a bulk run of 30 in its lane, and account b
    spec = control.add_oa("lanes-b")
    start_worker(
        concurrency=8,
        ZNS_RATE_PER_S=str(RATE),
        ZNS_ACCOUNTS__B__APP_ID=spec.app_id,
        ZNS_ACCOUNTS__B__SECRET_KEY=spec.secret_key,
        ZNS_ACCOUNTS__B__ACCESS_TOKEN=spec.access_token,
        ZNS_ACCOUNTS__B__REFRESH_TOKEN=spec.refresh_token,
    )
    producer = Producer(settings)
    report = producer.enqueue_many([job("bulk", n) for n in range(30)])
    wait_until(lambda: control.stats().sends_accepted >= 3, timeout_s=30, what="the run started")
    # When b's steps and one realtime step of default come from a bare send_task producer
    bare = Celery(broker=settings.effective_broker_url)
    for n in range(10):
        bare.send_task(TASK_NAME, kwargs=job("other", n, account="b"), queue=QUEUE)
    bare.send_task(TASK_NAME, kwargs=job("urgent", 0), queue=QUEUE)
    # Then they are sent while most of the backlog still waits
    urgent = {derive_tracking_id(f"other-{n}") for n in range(10)} | {
        derive_tracking_id("urgent-0")
    }
    wait_until(
        lambda: urgent <= {m.tracking_id for m in control.messages()},
        timeout_s=30,
        what="b's steps and the realtime step sent",
    )
    bulk_sent = sum(1 for m in control.messages() if (m.tracking_id or "") not in urgent)
    assert bulk_sent < 20, bulk_sent
    # And the whole run goes out, each step once, never above the rate in any second
    wait_until(lambda: control.stats().sends_accepted >= 41, timeout_s=60, what="41 sends")
    messages = control.messages()
    assert max(Counter(m.tracking_id for m in messages).values()) == 1
    default_times = sorted(m.sent_time_ms for m in messages if m.app_id == "sandbox-app")
    assert (
        max(sum(1 for t in default_times if start <= t < start + 1000) for start in default_times)
        <= RATE
    )
    # And a step that waited in its lane keeps its task id: its result is there as usual
    first = producer.app.AsyncResult(report.task_ids[-1]).get(timeout=30)
    assert first["status"] == "sent"
    producer.close()
