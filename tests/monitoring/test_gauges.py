"""The scrape-time gauges of worker/ops/gauges.py read the shared state from a real Redis, at a
bounded cost per account, and a failed read costs one gauge, not the scrape."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector
from pydantic import SecretStr

from tests.support import free_port
from worker import metrics
from worker.ops.gauges import (
    GAUGE_ERRORS,
    TOKEN_STATES,
    DailyQuotaCollector,
    DeadLetterCollector,
    HeartbeatCollector,
    ParkedCollector,
    PauseCollector,
    QueueCollector,
    TokenCollector,
    broker_queue_client,
    collectors,
    token_state,
)
from worker.ops.health import HealthFile
from worker.runtime import Runtime
from worker.status import ParkReason
from worker.tokens.access import TokenStatus

ACCOUNTS = ["default", "billing", "shop"]


def collect(*found: Collector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `found`, by (name, sorted labels)."""
    registry = CollectorRegistry()
    for collector in found:
        registry.register(collector)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def state_collectors(rt: Runtime, accounts: list[str]) -> list[Collector]:
    """The collectors that read the state Redis."""
    return [
        PauseCollector(accounts, rt.accounts),
        TokenCollector(accounts, rt.access_tokens, clock=time.time),
        DailyQuotaCollector(accounts, rt.quota, reserve=3),
        ParkedCollector(accounts, rt.parking, rt.redis, rt.keys, clock=time.time),
        DeadLetterCollector(rt.dead_letters),
    ]


def test_the_gauges_report_the_shared_state(runtime: Runtime) -> None:
    # Given a paused account, a token pair in doubt, parked steps (one overdue by two minutes),
    # two dead letters and a quota counter
    now = time.time()
    runtime.accounts.pause("billing", reason="permission revoked")
    runtime.access_tokens.set_pair(
        "default",
        access_token=SecretStr("a"),
        refresh_token=SecretStr("r"),
        expires_in_s=3600,
    )
    runtime.redis.hset(runtime.keys.oauth("default"), "in_doubt_since_ms", int(now * 1000))
    for due_at in (now - 120, now + 600, None):
        runtime.parking.park(
            "shop", reason=ParkReason.QUOTA, due_at=due_at, kwargs={}, meta={}, detail=""
        )
    for _ in range(2):
        runtime.dead_letters.add(reason="bad phone", error_class="recipient", code=-108, kwargs={})
    runtime.quota.init("default", 40, 100)
    # When Prometheus scrapes
    samples = collect(*state_collectors(runtime, ACCOUNTS))
    # Then every gauge says so
    assert samples[("zns_account_paused", (("account", "billing"),))] == 1
    assert samples[("zns_account_paused", (("account", "default"),))] == 0
    states = {
        s: samples[("zns_token_state", (("account", "default"), ("state", s)))]
        for s in TOKEN_STATES
    }
    assert states == {s: float(s == "in_doubt") for s in TOKEN_STATES}
    assert samples[("zns_token_state", (("account", "shop"), ("state", "unset")))] == 1
    expires = samples[("zns_access_token_expires_in_seconds", (("account", "default"),))]
    assert 3590 < expires <= 3600
    assert samples[("zns_daily_quota", (("account", "default"),))] == 100
    assert ("zns_daily_quota", (("account", "shop"),)) not in samples  # never probed
    assert samples[("zns_quota_reserve", (("account", "shop"),))] == 3
    assert samples[("zns_parked_jobs", (("account", "shop"),))] == 3
    assert samples[("zns_parked_overdue_jobs", (("account", "shop"),))] == 1
    assert 119 < samples[("zns_parked_overdue_seconds", (("account", "shop"),))] < 180
    assert samples[("zns_parked_overdue_seconds", (("account", "default"),))] == 0
    assert samples[("zns_dead_letters_stored", ())] == 2


@pytest.mark.parametrize("accounts", [ACCOUNTS[:1], ACCOUNTS])
def test_a_scrape_costs_five_round_trips_per_account_and_one_more(
    runtime: Runtime, accounts: list[str]
) -> None:
    found = state_collectors(runtime, accounts)
    collect(*found)  # the first scrape also opens the connection (its handshake is counted)
    before = metrics.REDIS_ROUND_TRIPS._value.get()
    collect(*found)
    assert metrics.REDIS_ROUND_TRIPS._value.get() - before == 5 * len(accounts) + 1


def test_the_queue_length_sums_the_priority_lists_of_the_redis_broker(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.rpush("zns", "a", "b")
    client.rpush("zns\x06\x163", "c")
    client.rpush("other", "d")
    queue = broker_queue_client(redis_url)
    assert queue is not None
    assert collect(QueueCollector(queue))[("zns_queue_length", (("queue", "zns"),))] == 3
    assert broker_queue_client("amqp://guest:guest@127.0.0.1:5672//") is None


def test_the_heartbeat_ages_come_from_the_heartbeat_file(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    HealthFile(path).beat("consumer_at", now=time.time() - 30)
    samples = collect(HeartbeatCollector(path, clock=time.time))
    assert 29 < samples[("zns_worker_heartbeat_age_seconds", (("kind", "consumer_at"),))] < 40
    assert ("zns_worker_heartbeat_age_seconds", (("kind", "maintenance_at"),)) not in samples
    assert collect(HeartbeatCollector(tmp_path / "none.json", clock=time.time)) == {}


def test_a_failed_read_costs_that_gauge_only_and_is_counted(tmp_path: Path) -> None:
    # Given a broker Redis that does not answer
    dead = broker_queue_client(f"redis://127.0.0.1:{free_port()}/0")
    assert dead is not None
    errors = GAUGE_ERRORS.labels("QueueCollector")
    before = errors._value.get()
    path = tmp_path / "health.json"
    HealthFile(path).beat("consumer_at")
    registry = CollectorRegistry()
    registry.register(QueueCollector(dead))
    registry.register(HeartbeatCollector(path, clock=time.time))
    # When scraped, the other gauges are still served and the failure is counted
    text = generate_latest(registry).decode()
    assert "zns_worker_heartbeat_age_seconds" in text and "zns_queue_length" not in text
    assert errors._value.get() == before + 1


def test_every_collector_is_built_for_a_worker(runtime: Runtime) -> None:
    names = {type(collector).__name__ for collector in collectors(runtime)}
    assert names == {
        "PauseCollector",
        "TokenCollector",
        "DailyQuotaCollector",
        "ParkedCollector",
        "DeadLetterCollector",
        "HeartbeatCollector",
        "QueueCollector",  # the tests' broker is the state Redis
    }


@pytest.mark.parametrize(
    ("fields", "now_ms", "expected"),
    [
        ({}, 0, "unset"),
        ({"has_access_token": True, "has_refresh_token": True}, 0, "ok"),
        ({"has_access_token": True, "access_expires_at_ms": 10}, 10, "expired"),
        ({"has_access_token": True, "has_refresh_token": True, "in_doubt_since_ms": 5}, 0,
         "in_doubt"),
        ({"has_access_token": True}, 0, "no_refresh_token"),
        ({"has_access_token": True, "has_refresh_token": True, "last_error": "-14014"}, 0,
         "refresh_failing"),
    ],
)  # fmt: skip
def test_token_state(fields: dict[str, object], now_ms: int, expected: str) -> None:
    base: dict[str, object] = {
        "has_access_token": False,
        "has_refresh_token": False,
        "generation": 0,
        "access_expires_at_ms": None,
        "refreshed_at_ms": None,
        "lifetime_s": None,
        "in_doubt_since_ms": None,
        "last_error": None,
        "refresh_failures": 0,
    }
    assert token_state(TokenStatus(**{**base, **fields}), now_ms) == expected  # type: ignore[arg-type]
