"""The benchmark's `naive` baseline, not used in production: a minimal Celery task that only posts
the message with one httpx client shared by every thread — what a team writes in an afternoon.
Its worker runs with `celery -A zns_dev.naive worker -Q zns-naive`."""

from __future__ import annotations

from typing import Any

import httpx
from celery import Celery

from worker.settings import load_settings

NAIVE_QUEUE = "zns-naive"
NAIVE_TASK = "bench.naive_send"

settings = load_settings()
app = Celery("zns-naive", broker=settings.effective_broker_url)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=NAIVE_QUEUE,
    worker_hijack_root_logger=False,
    # The same task-event setting as ours, so the two are compared doing the same for Flower.
    worker_send_task_events=settings.celery.task_events,
)
#: One client for every thread, its pool sized to the threads (what one does after the first
#: "pool timeout" errors): the design docs/performance.md measured collapsing under contention.
_threads = settings.celery.concurrency
CLIENT = httpx.Client(
    timeout=10.0,
    limits=httpx.Limits(max_connections=_threads, max_keepalive_connections=_threads),
)


@app.task(name=NAIVE_TASK)
def naive_send(
    phone: str,
    template_id: str,
    template_data: dict[str, Any],
    tracking_id: str,
    journey_token: str,
) -> Any:
    """POST /message/template with a journey token made beforehand."""
    response = CLIENT.post(
        f"{settings.api_base_url}/message/template",
        headers={
            "access_token": settings.access_token.get_secret_value()
            if settings.access_token
            else "",
            "journey_token": journey_token,
        },
        json={
            "phone": phone,
            "template_id": template_id,
            "template_data": template_data,
            "tracking_id": tracking_id,
        },
    )
    return response.json()
