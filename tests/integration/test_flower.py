"""`zns flower` against a real worker: basic auth by default; no phone, no token in what it shows.

Flower runs as `python -m worker.ops.cli flower` (our command, which execs Celery's Flower) on a
free loopback port; the job goes through the real Producer; the task is read back over Flower's API.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import redis
from celery import Celery
from typer.testing import CliRunner

from tests.rabbitmq import management_api_url, rabbitmq_url, require_management_api
from tests.support import REPO, SANDBOX_CREDENTIALS, WorkerProcess, free_port, wait_until
from worker.ops import flower
from worker.ops.cli import app
from worker.producer import Producer
from worker.settings import Settings
from zns_dev.sandbox.control import SandboxControl

FULL_PHONE = "84987654321"
NATIONAL_DIGITS = "987654321"  # in every spelling of the number: 0987…, +84 987…, 84987…
TASK = "zns.send_journey_step"
HTTP_TIMEOUT_S = 5.0
#: Flower's gauge, set from the worker's event heartbeats: Flower is subscribed to our events.
WORKER_ONLINE = re.compile(r'^flower_worker_online\{worker="[^"]+"\} 1\.0$', re.MULTILINE)


class FlowerProcess:
    """`zns flower` on a free loopback port, logs in a file, stopped with SIGTERM."""

    def __init__(self, env: dict[str, str], log_path: Path, *, credentials: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, flower.AUTH_VAR: credentials, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, *, ready_timeout_s: float = 30) -> FlowerProcess:
        """Start and wait until its HTTP server answers."""
        args = [sys.executable, "-m", "worker.ops.cli", "flower", "--port", str(self.port)]
        args += ["--address", "127.0.0.1"]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            args, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        wait_until(self._answers, timeout_s=ready_timeout_s, interval_s=0.2, what="Flower up")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"Flower exited early:\n{self.log()[-4000:]}")
        try:
            return httpx.get(f"{self.base_url}/healthcheck", timeout=1).text == "OK"
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        """Everything Flower printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 10) -> None:
        """SIGTERM, then SIGKILL if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log is not None:
            self._log.close()


@pytest.fixture
def flower_auth() -> tuple[str, str]:
    """A user and a random password for this test's Flower."""
    return "ops", secrets.token_urlsafe(16)


@pytest.fixture
def flower_process(
    worker_env: dict[str, str], tmp_path: Path, flower_auth: tuple[str, str]
) -> Iterator[FlowerProcess]:
    """Flower on the private Redis, with basic auth."""
    user, password = flower_auth
    process = FlowerProcess(worker_env, tmp_path / "flower.log", credentials=f"{user}:{password}")
    try:
        yield process.start()
    finally:
        process.stop()


def _sees_a_worker(client: httpx.Client) -> bool:
    return WORKER_ONLINE.search(client.get("/metrics").text) is not None


def _task_info(client: httpx.Client, task_id: str) -> dict[str, Any] | None:
    response = client.get(f"/api/task/info/{task_id}")
    if response.status_code == httpx.codes.NOT_FOUND:
        return None
    response.raise_for_status()
    info: dict[str, Any] = response.json()
    return info


def _secrets_in(text: str, control: SandboxControl) -> list[str]:
    tokens = [SANDBOX_CREDENTIALS["ZNS_ACCESS_TOKEN"], SANDBOX_CREDENTIALS["ZNS_REFRESH_TOKEN"]]
    tokens.append(SANDBOX_CREDENTIALS["ZNS_SECRET_KEY"])
    tokens += [token.token for token in control.journey_tokens()]
    return [token for token in tokens if token in text]


@pytest.mark.integration
@pytest.mark.timeout(150)
def test_flower_shows_the_task_without_phone_or_tokens(
    flower_process: FlowerProcess,
    flower_auth: tuple[str, str],
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    control: SandboxControl,
) -> None:
    # Given a real worker and Flower, subscribed to its events
    start_worker(concurrency=4)
    with httpx.Client(
        base_url=flower_process.base_url, auth=flower_auth, timeout=HTTP_TIMEOUT_S
    ) as client:
        wait_until(lambda: _sees_a_worker(client), timeout_s=30, what="Flower sees the worker")
        # When a billing app enqueues a step through the Producer (journey defaults to the phone)
        task_id = Producer(settings).enqueue(
            phone=FULL_PHONE, template_id="248791", template_data={"order_code": "ORD-42"}
        )
        # Then Flower shows it done, by name
        wait_until(
            lambda: (_task_info(client, task_id) or {}).get("state") == "SUCCESS",
            timeout_s=60,
            what="Flower shows the task SUCCESS",
        )
        info = _task_info(client, task_id)
        listing = client.get("/api/tasks", params={"taskname": TASK}).text
    assert info is not None
    assert info["name"] == TASK
    assert info["state"] == "SUCCESS"
    assert ast.literal_eval(info["result"])["status"] == "sent"
    assert len(control.messages(FULL_PHONE)) == 1
    shown = json.dumps(info) + listing
    # And no token of any kind appears anywhere in what Flower serves
    assert _secrets_in(shown, control) == [], "a token is visible in Flower"
    assert _secrets_in(flower_process.log(), control) == [], "a token is in Flower's log"
    # And the phone is masked: task-sent (producer) and task-received (worker) carry kwargsrepr
    assert NATIONAL_DIGITS not in shown, (
        "the full phone is visible in Flower's args/kwargs: the producer/task must publish "
        f"with a masked kwargsrepr; Flower showed kwargs={info.get('kwargs')!r}"
    )
    assert "8498****321" in info["kwargs"]


@pytest.mark.integration
@pytest.mark.timeout(150)
def test_flower_shows_each_step_of_a_bulk_batch_by_its_own_id(
    flower_process: FlowerProcess,
    flower_auth: tuple[str, str],
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    control: SandboxControl,
) -> None:
    # Given a worker and Flower
    start_worker(concurrency=4)
    with httpx.Client(
        base_url=flower_process.base_url, auth=flower_auth, timeout=HTTP_TIMEOUT_S
    ) as client:
        wait_until(lambda: _sees_a_worker(client), timeout_s=30, what="Flower sees the worker")
        # When three steps are enqueued in bulk (one `zns.send_journey_steps` message)
        jobs = [
            {"phone": FULL_PHONE, "template_id": "248791", "template_data": {"n": n}}
            for n in range(3)
        ]
        task_ids = Producer(settings).enqueue_many(jobs).task_ids
        # Then Flower shows each step under its own id, by the single-step name, done
        wait_until(
            lambda: all((_task_info(client, t) or {}).get("state") == "SUCCESS" for t in task_ids),
            timeout_s=60,
            what="Flower shows every step SUCCESS",
        )
        infos = [_task_info(client, t) or {} for t in task_ids]
    assert [info["name"] for info in infos] == [TASK] * 3
    assert all(ast.literal_eval(info["result"])["status"] == "sent" for info in infos)
    assert all(info["received"] and info["started"] for info in infos)
    # And the phone is masked, no token shows
    shown = json.dumps(infos)
    assert NATIONAL_DIGITS not in shown
    assert all("8498****321" in info["kwargs"] for info in infos)
    assert _secrets_in(shown, control) == []


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_flower_shows_the_backlog_of_the_zns_queue(
    flower_process: FlowerProcess, flower_auth: tuple[str, str], redis_url: str
) -> None:
    # Given 7 steps waiting on the Redis broker's `zns` queue (no worker takes them)
    foreign = Celery(broker=redis_url)
    redis.Redis.from_url(redis_url).delete("zns")
    for n in range(7):
        kwargs = {"phone": FULL_PHONE, "template_id": 1, "template_data": {"n": n}}
        foreign.send_task(TASK, kwargs=kwargs, queue="zns")
    with httpx.Client(
        base_url=flower_process.base_url, auth=flower_auth, timeout=HTTP_TIMEOUT_S
    ) as client:
        # Then Flower's queue API and Broker page know the broker and show the backlog
        lengths = client.get("/api/queues/length")
        broker_page = client.get("/broker")
    redis.Redis.from_url(redis_url).delete("zns")
    assert lengths.status_code == httpx.codes.OK, lengths.text
    assert {"name": "zns", "messages": 7} in lengths.json()["active_queues"]
    assert broker_page.status_code == httpx.codes.OK
    assert "zns" in broker_page.text


@pytest.fixture
def rabbitmq_broker(rabbitmq_vhost: str) -> str:
    """A RabbitMQ vhost of this test's own, its management API answering (tests/rabbitmq.py)."""
    require_management_api()
    return rabbitmq_url(rabbitmq_vhost)


def _queue_lengths(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/api/queues/length")
    response.raise_for_status()
    # RabbitMQ's management API says much more of each queue; its figure may lag or be absent.
    return [
        {"name": q["name"], "messages": q.get("messages")} for q in response.json()["active_queues"]
    ]


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize("broker_api", ["derived from the broker URL", "ZNS_FLOWER_BROKER_API"])
def test_flower_shows_the_backlog_of_the_zns_queue_on_rabbitmq(
    rabbitmq_broker: str,
    worker_env: dict[str, str],
    tmp_path: Path,
    flower_auth: tuple[str, str],
    broker_api: str,
) -> None:
    # Given 7 steps waiting on a RabbitMQ vhost's `zns` queue (no worker takes them)
    foreign = Celery(broker=rabbitmq_broker)
    for n in range(7):
        kwargs = {"phone": FULL_PHONE, "template_id": 1, "template_data": {"n": n}}
        foreign.send_task(TASK, kwargs=kwargs, queue="zns")
    foreign.close()
    # And `zns flower` on that broker, told the management API's URL or deriving it
    env = {**worker_env, "ZNS_BROKER_URL": rabbitmq_broker}
    if broker_api == flower.BROKER_API_VAR:
        env[flower.BROKER_API_VAR] = management_api_url()
    user, password = flower_auth
    process = FlowerProcess(env, tmp_path / "flower.log", credentials=f"{user}:{password}")
    lengths: list[dict[str, Any]] = []
    try:
        process.start()
        with httpx.Client(
            base_url=process.base_url, auth=flower_auth, timeout=HTTP_TIMEOUT_S
        ) as client:
            # Then its queue API shows the backlog (the management API's figures lag by seconds)
            def backlog_shown() -> bool:
                lengths[:] = _queue_lengths(client)
                return {"name": "zns", "messages": 7} in lengths

            try:
                wait_until(backlog_shown, timeout_s=30, interval_s=0.5, what="zns: 7 in Flower")
            except TimeoutError:
                pytest.fail(f"Flower shows {lengths}; its log:\n{process.log()[-3000:]}")
            # And its Broker page answers, listing the queue
            broker_page = client.get("/broker")
    finally:
        process.stop()
    assert broker_page.status_code == httpx.codes.OK
    assert "zns" in broker_page.text


WORKER_SIDE_MASKING = (
    "the worker passes on what it was given: its task-received event carries the message's own "
    "kwargsrepr (a producer that sets none shows the phone), and `inspect scheduled/reserved` "
    "(Flower's worker page) return the raw kwargs. Fix in the worker: a Request class for "
    "zns.send_journey_step that sets a masked _kwargsrepr and masks info()"
)


@pytest.mark.integration
@pytest.mark.timeout(150)
def test_flower_masks_the_phone_of_a_producer_that_sends_no_kwargsrepr(
    flower_process: FlowerProcess,
    flower_auth: tuple[str, str],
    redis_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # Given a worker and Flower, and a producer in another codebase (plain Celery, no kwargsrepr)
    start_worker(concurrency=4)
    foreign = Celery(broker=redis_url)
    with httpx.Client(
        base_url=flower_process.base_url, auth=flower_auth, timeout=HTTP_TIMEOUT_S
    ) as client:
        wait_until(lambda: _sees_a_worker(client), timeout_s=30, what="Flower sees the worker")
        # When it enqueues by name
        kwargs = {"phone": "0987 654 321", "template_id": 248791, "template_data": {"a": "b"}}
        task_id = foreign.send_task(TASK, kwargs=kwargs, queue="zns").id
        wait_until(
            lambda: (_task_info(client, task_id) or {}).get("state") == "SUCCESS",
            timeout_s=60,
            what="Flower shows the task SUCCESS",
        )
        info = _task_info(client, task_id)
    foreign.close()
    # Then Flower still shows no phone
    assert info is not None
    assert "987 654 321" not in info["kwargs"], "the phone is visible in Flower's kwargs"


@pytest.mark.integration
@pytest.mark.timeout(150)
def test_flower_worker_view_masks_the_phone_of_a_step_waiting_to_retry(
    flower_process: FlowerProcess,
    flower_auth: tuple[str, str],
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    control: SandboxControl,
) -> None:
    # Given a worker whose step waits for its retry (Zalo answers 503; backoff of 20-30 s)
    start_worker(
        concurrency=4,
        ZNS_PIPELINE__RETRY_BASE_DELAY_S="20",
        ZNS_PIPELINE__RETRY_MAX_DELAY_S="30",
    )
    control.set_faults(fault_5xx=1.0)
    with httpx.Client(
        base_url=flower_process.base_url, auth=flower_auth, timeout=HTTP_TIMEOUT_S * 3
    ) as client:
        wait_until(lambda: _sees_a_worker(client), timeout_s=30, what="Flower sees the worker")
        Producer(settings).enqueue(phone=FULL_PHONE, template_id="248791", template_data={"a": 1})
        # When an operator opens the worker's page (Flower inspects its scheduled tasks)
        views: list[str] = []

        def scheduled_task_shown() -> bool:
            name = _worker_name(client)
            response = client.get("/api/workers", params={"workername": name, "refresh": "1"})
            views.append(response.text)
            return any(w.get("scheduled") for w in response.json().values())

        wait_until(scheduled_task_shown, timeout_s=30, interval_s=0.5, what="a scheduled task")
    # Then no token shows, and the phone is masked there too
    assert _secrets_in(views[-1], control) == [], "a token is visible in Flower's worker view"
    assert NATIONAL_DIGITS not in views[-1], "the phone is visible in Flower's worker view"


def _worker_name(client: httpx.Client) -> str:
    found = re.search(r'flower_worker_online\{worker="([^"]+)"\} 1\.0', client.get("/metrics").text)
    assert found is not None
    return found.group(1)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_flower_refuses_requests_without_the_right_credentials(
    flower_process: FlowerProcess, flower_auth: tuple[str, str]
) -> None:
    user, password = flower_auth
    with httpx.Client(base_url=flower_process.base_url, timeout=HTTP_TIMEOUT_S) as client:
        for path in ("/api/tasks", "/api/workers", "/tasks", "/"):
            assert client.get(path).status_code == httpx.codes.UNAUTHORIZED, path
            wrong = client.get(path, auth=(user, password + "x"))
            assert wrong.status_code == httpx.codes.UNAUTHORIZED, path
        assert client.get("/api/tasks", auth=(user, password)).status_code == httpx.codes.OK
    assert password not in flower_process.log()


# -- the command itself (no Flower started) -----------------------------------------------------


@pytest.fixture
def exec_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str], dict[str, str]]]:
    """Record os.execve instead of replacing the test process."""
    calls: list[tuple[str, list[str], dict[str, str]]] = []

    def fake_execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        calls.append((path, argv, env))

    monkeypatch.setattr(os, "execve", fake_execve)
    monkeypatch.delenv(flower.AUTH_VAR, raising=False)
    monkeypatch.delenv(flower.FLOWER_AUTH_VAR, raising=False)
    for var in (flower.BROKER_API_VAR, flower.FLOWER_BROKER_API_VAR, "ZNS_BROKER_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(REPO / "tests")  # no .env of a developer's in the way
    return calls


def test_refuses_to_start_without_credentials(exec_calls: list[Any]) -> None:
    result = CliRunner().invoke(app, ["flower"])
    assert result.exit_code == flower.EXIT_USAGE
    assert flower.AUTH_VAR in result.output
    assert exec_calls == []


def test_no_auth_must_be_explicit_and_drops_inherited_credentials(
    exec_calls: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(flower.FLOWER_AUTH_VAR, "someone:else")
    result = CliRunner().invoke(app, ["flower", "--no-auth"])
    assert result.exit_code == 0, result.output
    [(_, _, env)] = exec_calls
    assert flower.FLOWER_AUTH_VAR not in env


def test_credentials_reach_flower_by_environment_never_argv_or_output(
    exec_calls: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(flower.AUTH_VAR, " ops:s3cret-one , audit:s3cret-two ")
    result = CliRunner().invoke(app, ["flower", "--port", "5601", "--address", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    [(path, argv, env)] = exec_calls
    assert path == sys.executable
    assert argv[1:6] == ["-m", "celery", "-A", "tasks.flower_app", "flower"]
    assert "--port=5601" in argv
    assert "--address=0.0.0.0" in argv
    assert env[flower.FLOWER_AUTH_VAR] == "ops:s3cret-one,audit:s3cret-two"
    assert flower.AUTH_VAR not in env
    assert "s3cret" not in " ".join(argv) + result.output


@pytest.mark.parametrize("value", ["", "ops", "ops:", ":pw", "ops:pw,", "ops:pw,audit"])
def test_malformed_credentials_are_refused_without_echoing_them(
    exec_calls: list[Any], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(flower.AUTH_VAR, value)
    result = CliRunner().invoke(app, ["flower"])
    assert result.exit_code == flower.EXIT_USAGE
    assert exec_calls == []
    if value:
        assert value not in result.output.replace(flower.AUTH_VAR, "")


def test_broker_api_reaches_flower_by_environment_never_argv_or_output(
    exec_calls: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(flower.AUTH_VAR, "ops:pw")
    monkeypatch.setenv("ZNS_BROKER_URL", "amqp://zns:broker-pw@rabbit:5672/billing")
    monkeypatch.setenv(flower.BROKER_API_VAR, " https://mon:s3cret-api@rabbit-mgmt/rabbitmq/api/ ")
    result = CliRunner().invoke(app, ["flower"])
    assert result.exit_code == 0, result.output
    [(_, argv, env)] = exec_calls
    assert env[flower.FLOWER_BROKER_API_VAR] == "https://mon:s3cret-api@rabbit-mgmt/rabbitmq/api/"
    assert flower.BROKER_API_VAR not in env
    assert not any("broker" in arg for arg in argv)
    assert "s3cret" not in " ".join(argv) + result.output


@pytest.mark.parametrize(
    ("broker_url", "expected"),
    [
        (
            "amqp://zns:p%40ss@rabbit.internal:5672/billing",
            "http://zns:p%40ss@rabbit.internal:15672/api/",
        ),
        ("amqp://guest:guest@127.0.0.1:5672//", "http://guest:guest@127.0.0.1:15672/api/"),
        ("amqps://zns:pw@rabbit:5671/billing", "https://zns:pw@rabbit:15671/api/"),
        ("amqp://rabbit", "http://rabbit:15672/api/"),
        (
            "amqp://zns:pw@[fd00::1]:5672/x;amqp://zns:pw@b:5672/x",
            "http://zns:pw@[fd00::1]:15672/api/",
        ),
    ],
)
def test_broker_api_defaults_to_the_management_api_of_the_rabbitmq_broker(
    exec_calls: list[Any], monkeypatch: pytest.MonkeyPatch, broker_url: str, expected: str
) -> None:
    # The API root, no vhost: Flower joins `queues/<vhost of the broker URL>` to it
    monkeypatch.setenv("ZNS_BROKER_URL", broker_url)
    monkeypatch.setenv(flower.FLOWER_BROKER_API_VAR, "http://inherited:pw@elsewhere:15672/api/")
    result = CliRunner().invoke(app, ["flower", "--no-auth"])
    assert result.exit_code == 0, result.output
    [(_, argv, env)] = exec_calls
    assert env[flower.FLOWER_BROKER_API_VAR] == expected
    assert "@" not in " ".join(argv) + result.output  # no credentials of the broker's


def test_no_broker_api_on_a_redis_broker(
    exec_calls: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a Redis broker, and a management API URL set by mistake (and one inherited)
    monkeypatch.setenv(flower.BROKER_API_VAR, "http://mon:s3cret-api@rabbit:15672/api/")
    monkeypatch.setenv(flower.FLOWER_BROKER_API_VAR, "http://mon:s3cret-api@rabbit:15672/api/")
    result = CliRunner().invoke(app, ["flower", "--no-auth"])
    # Then Flower gets none (it reads Redis itself), and we say so without the URL
    assert result.exit_code == 0, result.output
    [(_, _, env)] = exec_calls
    assert flower.FLOWER_BROKER_API_VAR not in env
    assert flower.BROKER_API_VAR not in env
    assert f"{flower.BROKER_API_VAR} is ignored" in result.output
    assert "s3cret" not in result.output


@pytest.mark.parametrize(
    "value",
    [
        "rabbit:15672/api/",  # no scheme
        "amqp://mon:s3cret@rabbit:5672/",  # the broker, not its API
        "http://mon:s3cret@rabbit:15672/api",  # Flower would ask /queues/<vhost>
        "http://mon:s3cret@rabbit:15672/api/billing",  # a vhost: Flower takes it from the broker
    ],
)
def test_malformed_broker_api_is_refused_without_echoing_it(
    exec_calls: list[Any], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ZNS_BROKER_URL", "amqp://guest:guest@rabbit:5672/billing")
    monkeypatch.setenv(flower.BROKER_API_VAR, value)
    result = CliRunner().invoke(app, ["flower", "--no-auth"])
    assert result.exit_code == flower.EXIT_USAGE
    assert flower.BROKER_API_VAR in result.output
    assert exec_calls == []
    assert value not in result.output
    assert "s3cret" not in result.output
