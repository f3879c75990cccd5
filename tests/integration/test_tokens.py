"""OA access-token lifecycle with real workers against the sandbox's single-use refresh tokens."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from tests.support import WorkerProcess, wait_until
from worker.ops.cli import app as cli
from worker.producer import Producer
from worker.runtime import Runtime
from worker.settings import Settings
from zns_dev.sandbox.config import SandboxConfig
from zns_dev.sandbox.control import SandboxControl
from zns_dev.sandbox.server import running_sandbox

StartWorker = Callable[..., WorkerProcess]


def steps(count: int, journeys: int, **extra: object) -> list[dict[str, object]]:
    return [
        {
            "phone": f"09{i % journeys:08d}",
            "template_id": "700",
            "template_data": {"n": i},
            "journey": f"tok-{i % journeys}",
            "idempotency_key": f"tok-{i}",
            **extra,
        }
        for i in range(count)
    ]


def test_four_workers_with_an_access_token_dying_every_50_sends_refresh_once_per_expiry(
    settings: Settings, start_worker: StartWorker, control: SandboxControl
) -> None:
    # Given an access token that dies after 50 sends, and reuse of a spent refresh token is fatal
    control.set_faults(access_token_max_sends=50, refresh_reuse_revokes=True)
    for _ in range(4):
        start_worker(concurrency=32)
    # When 600 steps arrive
    Producer(settings).enqueue_many(steps(600, 150))
    # Then every step is sent, with exactly one refresh per expiry and no reuse of a spent token
    wait_until(lambda: control.stats().sends_accepted == 600, timeout_s=180, what="600 sends")
    stats = control.stats()
    assert stats.refresh_successes == math.ceil(600 / 50) - 1
    assert stats.refresh_attempts == stats.refresh_successes
    assert stats.refresh_token_reuses == 0
    assert stats.refresh_failures == 0


def test_no_pause_and_no_parking_under_token_churn(
    settings: Settings, start_worker: StartWorker, control: SandboxControl, runtime: Runtime
) -> None:
    # Given tokens dying every 20 sends under 2 x 32 threads (a fresh token often dies again
    # before a waiting step gets to use it)
    control.set_faults(access_token_max_sends=20, refresh_reuse_revokes=True)
    start_worker(concurrency=32)
    start_worker(concurrency=32)
    Producer(settings).enqueue_many(steps(300, 100))
    wait_until(lambda: control.stats().sends_accepted == 300, timeout_s=120, what="300 sends")
    # Then the account was never paused and nothing parked
    assert runtime.accounts.status("default") is None
    assert runtime.parking.count("default") == 0
    assert control.stats().refresh_successes == 300 // 20 - 1
    assert control.stats().refresh_token_reuses == 0


@pytest.fixture
def slow_oauth_sandbox() -> Iterator[str]:
    with running_sandbox(SandboxConfig(port=0, oauth_latency_ms=3000)) as url:
        yield url


def test_a_refresh_slower_than_a_naive_lock_still_happens_once(
    slow_oauth_sandbox: str,
    worker_env: dict[str, str],
    start_worker: StartWorker,
    settings: Settings,
) -> None:
    # Given an OAuth host answering in 3 s (a 1-2 s lock would let a second refresher in)
    env = {"ZNS_API_BASE_URL": slow_oauth_sandbox, "ZNS_OAUTH_BASE_URL": slow_oauth_sandbox}
    with SandboxControl(slow_oauth_sandbox) as control:
        control.expire_access_tokens()
        start_worker(concurrency=16, **env)
        start_worker(concurrency=16, **env)
        # When 64 steps all meet the expired token at once
        Producer(settings).enqueue_many(steps(64, 16))
        # Then one refresh serves them all
        wait_until(lambda: control.stats().sends_accepted == 64, timeout_s=120, what="64 sends")
        stats = control.stats()
        assert stats.refresh_attempts == 1
        assert stats.refresh_token_reuses == 0


def test_oauth_error_keeps_the_working_pair_and_sending_goes_on(
    settings: Settings, start_worker: StartWorker, control: SandboxControl, runtime: Runtime
) -> None:
    # Given a token due for a proactive refresh, and an app secret Zalo refuses (HTTP 200 error)
    runtime.access_tokens.current("default")  # bootstrap
    an_hour_left = int((time.time() + 3600) * 1000)  # past 80% of a 25 h life: due
    runtime.redis.hset(
        runtime.keys.oauth("default"),
        mapping={"access_expires_at_ms": an_hour_left, "lifetime_s": 90_000},
    )
    start_worker(concurrency=8, ZNS_SECRET_KEY="not-the-secret")
    # When the maintenance pass tries to refresh, and steps keep coming
    wait_until(lambda: control.stats().refresh_attempts >= 1, timeout_s=30, what="a refresh")
    Producer(settings).enqueue_many(steps(20, 5))
    # Then the refusal is recorded, the pair is untouched, and every step is sent with it
    wait_until(lambda: control.stats().sends_accepted == 20, timeout_s=60, what="20 sends")
    status = runtime.access_tokens.status("default")
    assert status.generation == 0 and status.has_access_token
    assert status.last_error is not None and "OAuth refresh refused" in status.last_error
    assert runtime.accounts.status("default") is None
    assert control.stats().refresh_successes == 0


def test_dead_refresh_token_pauses_without_losing_jobs_and_token_set_recovers(
    settings: Settings,
    start_worker: StartWorker,
    control: SandboxControl,
    runtime: Runtime,
    worker_env: dict[str, str],
) -> None:
    # Given Redis holds an expired access token and a refresh token Zalo no longer knows
    control.expire_access_tokens()
    runtime.redis.hset(
        runtime.keys.oauth("default"),
        mapping={
            "access_token": "sandbox-access-token",
            "refresh_token": "long-gone",
            "generation": 3,
        },
    )
    start_worker(concurrency=8)
    # When 30 steps arrive
    Producer(settings).enqueue_many(steps(30, 10))
    # Then the account is paused, all 30 park, none is dead-lettered or lost
    wait_until(lambda: runtime.parking.count("default") == 30, timeout_s=60, what="30 parked")
    assert runtime.dead_letters.count() == 0
    assert control.stats().sends_accepted == 0
    runner = CliRunner()
    shown = runner.invoke(cli, ["token", "status"], env=worker_env).output
    assert "account paused" in shown and "zns token set" in shown
    assert "long-gone" not in shown and "sandbox-access-token" not in shown
    # When the operator stores a fresh authorisation and resumes
    env = {
        **worker_env,
        "ZNS_NEW_ACCESS_TOKEN": "sandbox-access-token",
        "ZNS_NEW_REFRESH_TOKEN": "sandbox-refresh-token",
    }
    done = runner.invoke(cli, ["token", "set", "--resume"], env=env)
    assert done.exit_code == 0, done.output
    assert "resumed; released 30" in done.output
    # Then all 30 go out (the stored access token is stale: one refresh, then sends)
    wait_until(lambda: control.stats().sends_accepted == 30, timeout_s=60, what="30 sends")
    assert control.stats().refresh_token_reuses == 0


def test_two_oas_each_send_with_their_own_tokens_and_quota(
    settings: Settings, start_worker: StartWorker, control: SandboxControl
) -> None:
    # Given a second OA "shop2" configured by name
    spec = control.add_oa("shop2-app", daily_quota=5)
    shop2 = {
        "ZNS_ACCOUNTS__SHOP2__APP_ID": spec.app_id,
        "ZNS_ACCOUNTS__SHOP2__SECRET_KEY": spec.secret_key,
        "ZNS_ACCOUNTS__SHOP2__ACCESS_TOKEN": spec.access_token,
        "ZNS_ACCOUNTS__SHOP2__REFRESH_TOKEN": spec.refresh_token,
    }
    start_worker(concurrency=8, **shop2)
    # When 10 steps go to each OA
    Producer(settings).enqueue_many(
        steps(10, 5)
        + [{**s, "idempotency_key": f"s2-{i}"} for i, s in enumerate(steps(10, 5, account="shop2"))]
    )
    # Then each OA sends with its own app, and shop2's quota of 5 parks the rest of its steps
    wait_until(lambda: control.stats().sends_accepted == 15, timeout_s=60, what="15 sends")
    by_app = [m.app_id for m in control.messages()]
    assert by_app.count("sandbox-app") == 10
    assert by_app.count("shop2-app") == 5


def test_tokens_are_encrypted_at_rest_when_a_key_is_set(
    settings: Settings, start_worker: StartWorker, control: SandboxControl, redis_url: str
) -> None:
    key = Fernet.generate_key().decode()
    start_worker(concurrency=4, ZNS_TOKEN_ENCRYPTION_KEYS=key)
    Producer(settings).enqueue_many(steps(4, 2))
    wait_until(lambda: control.stats().sends_accepted == 4, timeout_s=60, what="4 sends")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    stored: dict[str, dict[str, str]] = {
        str(k): client.hgetall(k)  # type: ignore[misc]
        for k in client.scan_iter(match="zns:*")
        if client.type(k) == "hash"
    }
    oauth = next(v for k, v in stored.items() if k.endswith(":oauth"))
    assert oauth["access_token"].startswith("enc:v1:") and oauth["refresh_token"].startswith(
        "enc:v1:"
    )
    journey = [v for k, v in stored.items() if ":jt:" in k]
    assert len(journey) == 2 and all(v["token"].startswith("enc:v1:") for v in journey)
    dump = repr(stored)
    assert "sandbox-access-token" not in dump and "sandbox-refresh-token" not in dump
    for token in control.journey_tokens():
        assert token.token not in dump
    client.close()
