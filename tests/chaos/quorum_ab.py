"""What quorum queues cost on RabbitMQ: classic and quorum (`ZNS_CELERY__QUEUE_TYPE`) side by side,
alternating, each run in a vhost of its own on the machine's RabbitMQ, against the sandbox.

    .venv/bin/python -m tests.chaos.quorum_ab [STEPS] [ROUNDS]

Per run: the producer API's `enqueue` (200 calls, ms each) and `enqueue_many` of STEPS realtime
steps (seconds), then one worker process (16 threads, Zalo 20 ms) sending them; steady sends/s
between the 10th and the 90th percentile of send times. Prints one line per run.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.chaos.harness import Chaos, make_steps
from tests.rabbitmq import rabbitmq_url
from zns_dev.sandbox.config import SandboxConfig

SINGLE_CALLS = 200


def _vhost() -> str:
    vhost = f"zns-ab-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, timeout=60)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        timeout=60,
    )
    return vhost


def run(queue_type: str, count: int) -> str:
    """One run; returns its line."""
    vhost = _vhost()
    try:
        with (
            tempfile.TemporaryDirectory() as workdir,
            Chaos(
                Path(workdir),
                sandbox=SandboxConfig(port=0, latency_ms=20),
                broker_url=rabbitmq_url(vhost),
                env={"ZNS_CELERY__QUEUE_TYPE": queue_type},
            ) as chaos,
        ):
            steps = make_steps(f"ab-{queue_type}", count + SINGLE_CALLS)
            started = time.perf_counter()
            for step in steps[:SINGLE_CALLS]:
                chaos.producer.enqueue(**step.job)
            single_ms = (time.perf_counter() - started) / SINGLE_CALLS * 1000
            started = time.perf_counter()
            chaos.producer.enqueue_many([s.job for s in steps[SINGLE_CALLS:]], lane="realtime")
            many_s = time.perf_counter() - started
            chaos.start_worker(concurrency=16)
            chaos.wait_sends(len(steps), timeout_s=900)
            sent = sorted(m.sent_time_ms / 1000 for m in chaos.control.messages())
            low, high = int(len(sent) * 0.1), int(len(sent) * 0.9)
            steady = (high - low) / (sent[high] - sent[low])
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False, timeout=60)
    return (
        f"{queue_type:8s} enqueue {single_ms:.2f} ms each; enqueue_many {count} in {many_s:.2f} s; "
        f"worker steady {steady:.0f} sends/s"
    )


def main() -> None:
    """Alternate classic and quorum runs."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    for round_ in range(rounds):
        for queue_type in ("classic", "quorum"):
            print(f"round {round_}: {run(queue_type, count)}", flush=True)


if __name__ == "__main__":
    main()
