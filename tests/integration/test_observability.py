"""Metrics scraped from a real worker after real sends; JSON logs with task id, account, masking."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import WorkerProcess, free_port, wait_until
from worker.producer import Producer
from worker.settings import Settings
from zns_dev.sandbox.control import SandboxControl

PHONE = "84987654321"


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_by_the_right_amounts(
    settings: Settings, start_worker: Callable[..., WorkerProcess], control: SandboxControl
) -> None:
    port = free_port()
    start_worker(concurrency=4, ZNS_CELERY__METRICS_PORT=str(port))
    producer = Producer(settings)
    # Given 6 good steps over 2 journeys, one repeated, and one Zalo refuses with -108
    control.script(-108, endpoint="send", phone="84912345678")
    jobs = [
        {"phone": PHONE, "template_id": "9", "template_data": {"i": i}, "journey": f"m{i % 2}",
         "idempotency_key": f"m-{i}"}
        for i in range(6)
    ]  # fmt: skip
    ids = producer.enqueue_many([*jobs, jobs[0]]).task_ids
    ids.append(producer.enqueue(phone="0912345678", template_id="9", template_data={"x": 1}))
    for task_id in ids:
        producer.app.AsyncResult(task_id).get(timeout=60)
    # Then the counters say so
    samples = scrape(port)
    assert value(samples, "zns_messages_sent_total", account="default") == 6
    assert value(samples, "zns_duplicates_total", account="default") == 1
    assert value(samples, "zns_journey_tokens_created_total", account="default") == 3
    assert value(samples, "zns_dead_letters_total", account="default", error_class="recipient") == 1
    assert (
        value(
            samples,
            "zns_send_failures_total",
            account="default",
            error_class="recipient",
            code="-108",
        )
        == 1
    )
    assert value(samples, "zns_send_seconds_count", account="default") == 7
    remaining = value(samples, "zns_remaining_quota", account="default")
    assert remaining == control.stats().quota["sandbox-app"].remaining_quota


def test_logs_are_json_with_task_id_and_account_and_no_phone_or_token(
    settings: Settings, start_worker: Callable[..., WorkerProcess], control: SandboxControl
) -> None:
    worker = start_worker(concurrency=2, ZNS_LOG_FORMAT="json")
    producer = Producer(settings)
    control.script(-100, endpoint="send", phone=PHONE)  # one retry: a log line inside the task
    task_id = producer.enqueue(phone=PHONE, template_id="9", template_data={"a": 1})
    assert producer.app.AsyncResult(task_id).get(timeout=60)["status"] == "sent"
    wait_until(lambda: task_id in worker.log(), timeout_s=10)
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("task_id") == task_id]
    assert mine, "no JSON line carries the task id"
    assert any(line.get("account") == "default" for line in mine)
    assert all({"time", "level", "message"} <= set(line) for line in lines)
    text = worker.log()
    assert PHONE not in text and "0987654321" not in text
    for secret in ["sandbox-access-token", "sandbox-refresh-token", "sandbox-secret"]:
        assert secret not in text
    for token in control.journey_tokens():
        assert token.token not in text
