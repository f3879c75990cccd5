"""The README's demo command, and parked jobs coming back through real workers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.support import REPO, WorkerProcess, wait_until
from worker.ops.health import HealthFile
from worker.producer import Producer
from worker.runtime import Runtime
from worker.settings import Settings
from worker.status import ParkReason
from zns_dev.sandbox.control import SandboxControl


@pytest.mark.parametrize("given", [False, True])
def test_demo_runs_green_and_prints_the_summary(redis_url: str, given: bool) -> None:
    # The demo's own redis-server by default (ZNS_REDIS_URL, pointing at ours, is not used);
    # with --redis-url, ours: it cleans up after itself there
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZNS_")}
    env["ZNS_REDIS_URL"] = redis_url
    demo_url = redis_url.rsplit("/", 1)[0] + "/15"
    before = redis.Redis.from_url(redis_url).dbsize()
    done = subprocess.run(
        [sys.executable, "-m", "worker.ops.cli", "demo", "--orders", "10", "--latency-ms", "0"]
        + (["--redis-url", demo_url] if given else []),
        cwd=REPO,
        env={**env, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "zns demo summary" in out
    # 10 orders x 3 steps: 3 orders have phones the producer refuses, 1 has no Zalo account
    assert re.search(r"messages sent\W+18\b", out), out
    assert re.search(r"dead letters\W+3\b", out), out
    assert re.search(r"rejected by the producer\W+9\b", out), out
    assert "No Zalo account" in out
    # the token made for the phone without a Zalo account carried nothing, and the summary says so
    assert re.search(r"journey tokens created\W+7 \(1 never used", out), out
    assert ("a private redis-server" in out) is not given
    leftover = redis.Redis.from_url(demo_url)
    assert list(leftover.scan_iter(match="zns-demo:*")) == []
    leftover.close()
    assert redis.Redis.from_url(redis_url).dbsize() == before  # ZNS_REDIS_URL untouched


def test_parked_jobs_come_back_when_due_even_if_a_releaser_died(
    runtime: Runtime, start_worker: Callable[..., WorkerProcess], control: SandboxControl
) -> None:
    # Given five parked jobs due in a second, one of them leased by a releaser that then died
    for i in range(5):
        runtime.parking.park(
            "default",
            reason=ParkReason.NIGHT,
            due_at=time.time() + 1,
            kwargs={
                "phone": "84987654321",
                "template_id": "600",
                "template_data": {"i": i},
                "journey": "night",
                "idempotency_key": f"night-{i}",
            },
            meta={"history": [{"class": "night_hours", "code": -133, "message": "night"}]},
        )
    wait_until(lambda: runtime.parking.lease_due("default", 1) != [], timeout_s=5, what="a lease")
    # When a worker runs (its maintenance thread releases due jobs)
    start_worker(concurrency=4)
    # Then all five are sent, each once, well within 30 s of being due
    wait_until(lambda: control.stats().sends_accepted == 5, timeout_s=30, what="5 sends")
    wait_until(lambda: runtime.parking.count("default") == 0, timeout_s=10, what="empty lot")
    assert len({m.tracking_id for m in control.messages()}) == 5


def test_zns_worker_command_consumes_the_queue(
    worker_env: dict[str, str], settings: Settings, control: SandboxControl, tmp_path: Path
) -> None:
    # Given `zns worker` (what the Procfile and the image run)
    log = (tmp_path / "zns-worker.log").open("wb")
    health = HealthFile(tmp_path / "health.json")
    env = {**os.environ, **worker_env, "ZNS_CELERY__HEALTH_FILE": str(health.path)}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "zns"), "worker", "-c", "4"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        # When a job is enqueued
        Producer(settings).enqueue(phone="0987654321", template_id="1", template_data={"a": 1})
        # Then it is sent, and SIGTERM stops the worker cleanly
        wait_until(lambda: control.stats().sends_accepted == 1, timeout_s=60, what="1 send")
        # And its heartbeats (consumer loop and maintenance) keep `zns check` green
        wait_until(
            lambda: health.check(max_age_s=10).healthy, timeout_s=30, what="fresh heartbeats"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        log.close()
