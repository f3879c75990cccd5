"""The machine's RabbitMQ for the broker tests: a vhost of our own per test, so runs on one
machine never share a queue. Missing RabbitMQ: the test is skipped with one line, except under
CI=true, where it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kombu import Connection, Exchange, Queue

from worker.messaging.names import QUEUE

RABBITMQ_URL = os.environ.get(
    "ZNS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/{vhost}"
).replace("5672//", "5672/{vhost}")


def rabbitmq_url(vhost: str) -> str:
    """The broker URL of `vhost` ("/" is the default vhost)."""
    return RABBITMQ_URL.format(vhost=vhost)


def require_rabbitmq() -> None:
    """Skip (fail under CI=true) when no RabbitMQ answers."""
    try:
        with Connection(rabbitmq_url("/"), connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=2)
    except Exception as exc:  # kombu raises transport-specific errors
        reason = f"RabbitMQ not reachable at {rabbitmq_url('/')}: {type(exc).__name__}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI needs it)")
        pytest.skip(reason)


@pytest.fixture
def rabbitmq_vhost() -> Iterator[str]:
    """A vhost of our own (guest may use it), deleted after. Without rabbitmqctl: the default
    vhost "/", with our fixed queue `zns` purged first."""
    require_rabbitmq()
    if shutil.which("rabbitmqctl") is None:
        with Connection(rabbitmq_url("/"), connect_timeout=5) as conn:
            Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE)(conn.channel()).declare()
            Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE)(conn.channel()).purge()
        yield "/"
        return
    vhost = f"zns-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, timeout=60)
    try:
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
            timeout=60,
        )
        yield vhost
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False, timeout=60)
