"""The machine's RabbitMQ for the broker tests: a vhost of our own per test, so runs on one
machine never share a queue. Missing RabbitMQ (or, for Flower's Broker page, its management
API): the test is skipped with one line, except under CI=true, where it fails."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import NoReturn
from urllib.parse import urlsplit

import httpx
import pytest
from kombu import Connection, Exchange, Queue

from tests.support import wait_until
from worker.messaging.names import QUEUE

RABBITMQ_URL = os.environ.get(
    "ZNS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/{vhost}"
).replace("5672//", "5672/{vhost}")
MANAGEMENT_PORT = 15672  # the management plugin's default HTTP listener
MANAGEMENT_PLUGIN = "rabbitmq_management"
#: The plugin starts its HTTP listener a few seconds after `rabbitmq-plugins enable` returns.
MANAGEMENT_START_TIMEOUT_S = 60
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def rabbitmq_url(vhost: str) -> str:
    """The broker URL of `vhost` ("/" is the default vhost)."""
    return RABBITMQ_URL.format(vhost=vhost)


def unavailable(reason: str) -> NoReturn:
    """Skip with `reason`; fail under CI=true, where the broker tests must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI needs it)")
    pytest.skip(reason)


def require_rabbitmq() -> None:
    """Skip (fail under CI=true) when no RabbitMQ answers."""
    try:
        with Connection(rabbitmq_url("/"), connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=2)
    except Exception as exc:  # kombu raises transport-specific errors
        unavailable(f"RabbitMQ not reachable at {rabbitmq_url('/')}: {type(exc).__name__}")


def management_api_url() -> str:
    """The management HTTP API of the test RabbitMQ, credentials included (`…/api/`)."""
    broker = urlsplit(rabbitmq_url("/"))
    return f"http://{broker.netloc.rsplit(':', 1)[0]}:{MANAGEMENT_PORT}/api/"


def _management_api_answers() -> bool:
    api = urlsplit(management_api_url())
    auth = (api.username or "guest", api.password or "guest")
    url = f"http://{api.hostname}:{api.port}/api/overview"
    try:
        return httpx.get(url, auth=auth, timeout=2).status_code == httpx.codes.OK
    except httpx.HTTPError:
        return False


@functools.cache
def _enable_management_plugin() -> str | None:
    """Enable the plugin on this machine once a session; None, else why it cannot be."""
    if urlsplit(rabbitmq_url("/")).hostname not in LOOPBACK:
        return f"RabbitMQ at {rabbitmq_url('/')} is not on this machine, to enable the plugin"
    if shutil.which("rabbitmq-plugins") is None:
        return "no rabbitmq-plugins here, to enable it"
    enabled = subprocess.run(
        ["rabbitmq-plugins", "enable", MANAGEMENT_PLUGIN],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if enabled.returncode != 0:
        last = (enabled.stderr or enabled.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"`rabbitmq-plugins enable {MANAGEMENT_PLUGIN}` failed: {last[0]}"
    try:
        wait_until(
            _management_api_answers,
            timeout_s=MANAGEMENT_START_TIMEOUT_S,
            interval_s=0.5,
            what="the management API",
        )
    except TimeoutError:
        return f"enabled, but no answer within {MANAGEMENT_START_TIMEOUT_S}s"
    return None


def require_management_api() -> str:
    """The management API's URL (Flower's Broker page reads queue lengths there); enables the
    plugin once when it does not answer. Skip (fail under CI=true) where that is impossible."""
    require_rabbitmq()
    if not _management_api_answers():
        why = _enable_management_plugin()
        if why is not None:
            unavailable(f"RabbitMQ management API not answering on :{MANAGEMENT_PORT} ({why})")
    return management_api_url()


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
