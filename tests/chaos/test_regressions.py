"""Regression tests for bugs the chaos suite found in worker/ and tasks/.

Each is `xfail(strict=True)` until its fix lands: then it passes, strict xfail turns that into a
failure, and the mark is removed. The evidence and the proposed fix are in docs/reliability.md
("Known failure modes and their guards").
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.chaos.harness import (
    QUEUE_LISTS,
    UNACKED,
    UNACKED_INDEX,
    Chaos,
    rabbitmq_idle,
    restore_sweep_period_s,
)
from tests.chaos.report import Row
from tests.chaos.test_fuzz import publish_raw, valid_kwargs
from tests.chaos.test_redis_restart import down_for_two_seconds
from tests.chaos.test_redis_restart import scenario as restart_scenario
from tests.rabbitmq import RABBITMQ_URL
from worker.errors import InvalidJob, ZaloError
from worker.messaging.names import TASK_NAME
from worker.producer import Producer
from worker.settings import Settings
from worker.zalo.client import ZaloClient
from zns_dev.sandbox.config import SandboxConfig

FIVE_MINUTES_S = 300

# -- 1. a dead worker's jobs come back later than 5 minutes ---------------------------------------


def test_a_dead_workers_jobs_are_restored_within_five_minutes() -> None:
    # Given the production defaults
    settings = Settings(_env_file=None)
    # When a worker dies holding a job just delivered to it, a live worker's sweep restores it
    # once it is older than the visibility timeout: at worst one sweep period later
    sweep_s = restore_sweep_period_s(settings)
    # Then that worst case is within the 5 minutes
    assert settings.celery.visibility_timeout_s + sweep_s <= FIVE_MINUTES_S


# -- 2. a number Zalo sends out of range crashed the client (fixed: ZaloBadResponse) -------------


def _answer_with(text: str) -> ZaloClient:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=text.encode(), headers={"content-type": "text/json"})

    return ZaloClient(
        api_base_url="https://api.test",
        oauth_base_url="https://oauth.test",
        transport=httpx.MockTransport(handler),
    )


@pytest.mark.parametrize("call", ["send_template", "refresh_access_token"])
def test_an_error_code_out_of_range_is_a_zalo_error(call: str) -> None:
    client = _answer_with('{"error": 1e400}')
    with client, pytest.raises(ZaloError):
        if call == "send_template":
            client.send_template(
                SecretStr("a"),
                SecretStr("j"),
                phone="84987654321",
                template_id="1",
                template_data={"a": "b"},
                tracking_id="t-1",
            )
        else:
            client.refresh_access_token(
                app_id="app", secret_key=SecretStr("s"), refresh_token=SecretStr("r")
            )


# -- 3. NaN / Infinity in template_data passed validation (fixed: refused, InvalidJob) -----------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_or_infinity_in_template_data_is_refused_by_the_producer(value: float) -> None:
    with pytest.raises(InvalidJob):
        Producer.validate(
            {"phone": "0987654321", "template_id": "1", "template_data": {"a": value}}
        )


# -- 4. a state-Redis outage with a RabbitMQ broker loses the steps in flight -------------------


@pytest.mark.chaos_full
@pytest.mark.timeout(600)
def test_state_redis_outage_with_a_rabbitmq_broker_loses_and_stalls_nothing(
    rabbitmq_vhost: str, new_chaos: Callable[..., Chaos], record: Callable[[Row], None]
) -> None:
    # Given a RabbitMQ broker and the state in Redis, when that Redis is down for 2 s mid-run
    # (RabbitMQ keeps delivering meanwhile)
    url = RABBITMQ_URL.format(vhost=rabbitmq_vhost)
    row, _, _ = restart_scenario(
        new_chaos,
        600,
        "state Redis down 2 s, RabbitMQ broker",
        down_for_two_seconds,
        broker_url=url,
        broker_idle=rabbitmq_idle(rabbitmq_vhost, url),
        latency_ms=100,  # more steps in flight when Redis goes away
        drain_timeout_s=60,
    )
    record(row)
    # Then the workers resume and no step is lost or left behind
    assert row.details["resume_s"] is not None, "sends never resumed"
    assert row.lost == 0, row.details["lost_keys"]


# -- 5. malformed task messages kill, hang or silently drop ---------------------------------------


@pytest.fixture(scope="module")
def malformed_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    """One world for the malformed-message cases; each case gets a live worker and a clean
    queue."""
    workdir: Path = tmp_path_factory.mktemp("malformed")
    with Chaos(workdir, sandbox=SandboxConfig(port=0), appendonly=False) as world:
        yield world


def _task_headers(marker: str, **changes: Any) -> dict[str, Any]:
    headers = {"lang": "py", "task": TASK_NAME, "id": marker, "root_id": marker, "x-fuzz": marker}
    headers.update(changes)
    return headers


def _message(body: Any, headers: dict[str, Any], content_type: str = "application/json") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    kind = "garbage" if isinstance(body, bytes) else "raw"  # raw bytes travel as "binary"
    return {"body": raw, "headers": headers, "content_type": content_type, "kind": kind}


EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
#: name -> (what happened before the fix, how to build the message from its marker)
MALFORMED: dict[str, tuple[str, Any]] = {
    "body is an object": (
        "worker dies: ValueError unpacking [args, kwargs, embed] in celery Request",
        lambda m: _message({"m": m}, _task_headers(m)),
    ),
    "body has two parts": (
        "worker dies: ValueError unpacking [args, kwargs, embed]",
        lambda m: _message([[], valid_kwargs(m)], _task_headers(m)),
    ),
    "raw bytes (application/data)": (
        "worker dies: TypeError `'args' in bytes` in celery's strategy",
        lambda m: _message(m.encode() + b"\x00\xff", _task_headers(m), "application/data"),
    ),
    "task name is a list": (
        "worker dies: TypeError unhashable list in strategies[type_]",
        lambda m: _message([[], valid_kwargs(m), EMBED], _task_headers(m, task=[TASK_NAME])),
    ),
    "timelimit has three values": (
        "worker dies: ValueError unpacking time limits in execute_using_pool",
        lambda m: _message([[], valid_kwargs(m), EMBED], _task_headers(m, timelimit=[1, 2, 3])),
    ),
    "expires is empty": (
        "worker dies: AttributeError (None has no tzinfo) in maybe_make_aware",
        lambda m: _message([[], valid_kwargs(m), EMBED], _task_headers(m, expires="")),
    ),
    "protocol 1 without an id": (
        "consumer restart loop: KeyError('id') in on_unknown_task; dead-lettered again each time",
        lambda m: _message({"task": "zns.unknown", "m": m}, {"x-fuzz": m}),
    ),
    "embed is a string": (
        "job hangs unacked in the worker for good (no result, no dead letter)",
        lambda m: _message([[], valid_kwargs(m), "x"], _task_headers(m)),
    ),
    "args is a number": (
        "job lost: task FAILURE (TypeError before our task runs), acked, no dead letter",
        lambda m: _message([5, valid_kwargs(m), EMBED], _task_headers(m)),
    ),
    "kwargs is a list": (
        "job lost: InvalidTaskError outside the body, acked, no result, no dead letter",
        lambda m: _message([[], [1, 2], EMBED], _task_headers(m)),
    ),
    "NaN in template_data": (
        "job lost: httpx refuses NaN (ValueError), task FAILURE, no dead letter",
        lambda m: _message(
            [[], {**valid_kwargs(m), "template_data": {"a": math.nan}}, EMBED], _task_headers(m)
        ),
    ),
}
SHORT_TIER = {"body is an object", "kwargs is a list", "embed is a string"}


def _dead_letters_mentioning(world: Chaos, marker: str) -> int:
    entries = world.runtime.dead_letters.entries(limit=max(world.runtime.dead_letters.count(), 1))
    return sum(1 for e in entries if marker in json.dumps([e.task_id, e.kwargs], default=str))


def _clean_queue(world: Chaos) -> None:
    """Stop every worker and drop whatever a failed case left in the broker."""
    for worker in world.alive_workers():
        worker.kill()
    world.broker.delete(*QUEUE_LISTS, UNACKED, UNACKED_INDEX)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(name, marks=[] if name in SHORT_TIER else [pytest.mark.chaos_full])
        for name in MALFORMED
    ],
)
def test_a_malformed_task_message_is_dead_lettered_once_and_the_worker_lives(
    malformed_world: Chaos, case: str
) -> None:
    world = malformed_world
    worker = (
        world.alive_workers()[0] if world.alive_workers() else world.start_worker(concurrency=4)
    )
    assert worker.process is not None
    marker = f"fz-{case.replace(' ', '-')}-{time.monotonic_ns() % 10**9}"
    # When a foreign producer publishes the message
    publish_raw(world.redis_server.url, [MALFORMED[case][1](marker)])
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and worker.process.poll() is None:
        if _dead_letters_mentioning(world, marker) and world.broker_idle():
            break
        time.sleep(0.2)
    time.sleep(0.5)  # a redelivery loop would add a second dead letter by now
    alive = worker.process.poll() is None
    dead_letters = _dead_letters_mentioning(world, marker)
    idle = world.broker_idle()
    if not (alive and dead_letters == 1 and idle):
        _clean_queue(world)
    # Then the worker lives, the message is dead-lettered exactly once, nothing is left behind
    assert alive, "the worker died"
    assert dead_letters == 1, f"{dead_letters} dead letters for it"
    assert idle, "the message is still queued or unacked"
