"""Shared fixtures: a private Redis, the sandbox over HTTP, real workers. Nothing is mocked."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.fakes import FakeClock, store_client
from tests.rabbitmq import rabbitmq_vhost  # noqa: F401 (a fixture, shared with tests/chaos)
from tests.support import SANDBOX_CREDENTIALS, RedisServer, WorkerProcess
from worker.runtime import Runtime, build_runtime
from worker.settings import Settings
from worker.state.keys import Keys
from zns_dev.sandbox.config import SandboxConfig
from zns_dev.sandbox.control import SandboxControl
from zns_dev.sandbox.server import running_sandbox

#: Fast maintenance and retries so flows finish in seconds (still through the real code paths).
FAST_PIPELINE = {
    "ZNS_PIPELINE__MAINTENANCE_INTERVAL_S": "0.5",
    "ZNS_PIPELINE__QUOTA_PROBE_INTERVAL_S": "1",
    "ZNS_PIPELINE__PAUSE_PROBE_INTERVAL_S": "3600",
    "ZNS_PIPELINE__RETRY_BASE_DELAY_S": "0.2",
    "ZNS_PIPELINE__RETRY_MAX_DELAY_S": "1",
    "ZNS_PIPELINE__PARK_LEASE_S": "2",
    "ZNS_CELERY__METRICS_PORT": "0",  # tests run several workers on one host
}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the session (tests flush it; the shared one is untouched)."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean private Redis for this test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """The project's Redis client (str replies) on the clean private Redis, for store tests."""
    with store_client(redis_url) as c:
        yield c


@pytest.fixture
def keys() -> Keys:
    """Key builder under the default prefix."""
    return Keys("zns")


@pytest.fixture
def clock() -> FakeClock:
    """A settable clock for stores that take `clock=`."""
    return FakeClock()


@pytest.fixture(scope="session")
def sandbox_session() -> Iterator[str]:
    """The sandbox Zalo over real HTTP on loopback."""
    with running_sandbox(SandboxConfig(port=0)) as base_url:
        yield base_url


@pytest.fixture
def sandbox_url(sandbox_session: str) -> str:
    """The session sandbox, reset to its initial state."""
    with SandboxControl(sandbox_session) as control:
        control.reset()
    return sandbox_session


@pytest.fixture
def control(sandbox_url: str) -> Iterator[SandboxControl]:
    """The sandbox's control and inspection API."""
    with SandboxControl(sandbox_url) as ctl:
        yield ctl


@pytest.fixture
def worker_env(redis_url: str, sandbox_url: str) -> dict[str, str]:
    """Environment for a worker, producer or CLI pointed at the private Redis and the sandbox."""
    return {
        "ZNS_REDIS_URL": redis_url,
        "ZNS_API_BASE_URL": sandbox_url,
        "ZNS_OAUTH_BASE_URL": sandbox_url,
        **SANDBOX_CREDENTIALS,
        **FAST_PIPELINE,
    }


def settings_from(env: dict[str, str]) -> Settings:
    """Settings as a process with `env` would load them (no .env, no ambient ZNS_ variables)."""
    values = {k.removeprefix("ZNS_").lower(): v for k, v in env.items() if "__" not in k}
    nested: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        if "__" in key:
            group, name = key.removeprefix("ZNS_").lower().split("__", 1)
            nested.setdefault(group, {})[name] = value
    return Settings(_env_file=None, **values, **nested)  # type: ignore[arg-type]


@pytest.fixture
def settings(worker_env: dict[str, str]) -> Settings:
    """Settings matching `worker_env`."""
    return settings_from(worker_env)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime (stores, sender) in the test process, against the private Redis."""
    rt = build_runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def start_worker(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes; all are stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(concurrency: int = 16, **extra_env: str) -> WorkerProcess:
        index = len(started)
        worker = WorkerProcess(
            {**worker_env, **extra_env},
            tmp_path / f"worker-{index}.log",
            concurrency=concurrency,
            name=f"w{index}",
        )
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
