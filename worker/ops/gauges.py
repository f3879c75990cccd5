"""Scrape-time gauges for the alerts of deploy/monitoring/: the state shared by every pod, read
from Redis when Prometheus scrapes (like `QuotaCollector` in worker/metrics.py), so every pod
reports the same, current figure and nothing has to be kept fresh between scrapes.

One collector per concept; each costs a bounded number of Redis round trips per account (one or
two), never a scan of the keyspace:

PauseCollector       zns_account_paused{account}                       1 HGETALL per account
TokenCollector       zns_token_state{account,state}, zns_access_token_expires_in_seconds,
                     zns_token_refresh_failures                        1 HGETALL per account
DailyQuotaCollector  zns_daily_quota{account}, zns_quota_reserve{account}  1 HGETALL per account
ParkedCollector      zns_parked_jobs, zns_parked_overdue_jobs, zns_parked_overdue_seconds
                                                                       2 round trips per account
DeadLetterCollector  zns_dead_letters_stored                           1 ZCARD
QueueCollector       zns_queue_length{queue}  (Redis broker only)      1 pipeline of LLENs
HeartbeatCollector   zns_worker_heartbeat_age_seconds{kind}            the local heartbeat file

A collector whose read fails (Redis unreachable) yields no sample and counts the failure in
`zns_gauge_errors_total{collector}`: one broken read must not turn the whole scrape into a 500,
which would also hide the counters that say what went wrong.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from worker.clock import Clock, ms, system_clock
from worker.messaging.broker import transport_for
from worker.messaging.names import QUEUE
from worker.ops.health import KINDS, HealthFile
from worker.runtime import Runtime
from worker.state.deadletters import DeadLetterStore
from worker.state.keys import Keys
from worker.state.parking import ParkingLot
from worker.state.pauses import AccountState
from worker.state.quota import QuotaStore
from worker.tokens.access import AccessTokenManager, TokenStatus

log = logging.getLogger(__name__)

#: A parked job is overdue once its due time is this far behind: the releasers run every
#: `maintenance_interval_s` (5 s) and take a batch per pass, so a minute means none is releasing.
OVERDUE_GRACE_S = 60.0
#: kombu's Redis transport keeps one list per priority step: `zns`, then `zns\x06\x16<step>`.
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
KOMBU_PRIORITY_SEP = "\x06\x16"
#: Every value of `zns_token_state{state}`; exactly one is 1 per account.
TOKEN_STATES = ("ok", "unset", "expired", "in_doubt", "no_refresh_token", "refresh_failing")

GAUGE_ERRORS = Counter(
    "zns_gauge_errors_total",
    "Scrape-time gauge reads that failed (Redis unreachable); the gauge had no sample.",
    ["collector"],
)
READ_ERRORS = (redis.RedisError, OSError, ValueError)


class _Guarded(Collector):
    """Runs `_collect`; on a failed read yields nothing and counts the failure."""

    def collect(self) -> Iterator[Metric]:
        """The families, or none when the read failed."""
        try:
            families = list(self._collect())
        except READ_ERRORS as exc:
            GAUGE_ERRORS.labels(type(self).__name__).inc()
            log.warning("%s: no sample this scrape (%s)", type(self).__name__, type(exc).__name__)
            return iter(())
        return iter(families)

    def _collect(self) -> Iterator[Metric]:
        raise NotImplementedError


class PauseCollector(_Guarded):
    """`zns_account_paused{account}`: 1 while the account parks all its steps."""

    def __init__(self, accounts: Sequence[str], state: AccountState) -> None:
        self._accounts = list(accounts)
        self._state = state

    def _collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "zns_account_paused",
            "1 while the account is paused (its steps park until `zns account resume`).",
            labels=["account"],
        )
        for account in self._accounts:
            gauge.add_metric([account], 0 if self._state.status(account) is None else 1)
        yield gauge


def token_state(status: TokenStatus, now_ms: int) -> str:
    """One of `TOKEN_STATES`: the worst thing true of the account's token pair."""
    if not status.has_access_token:
        return "unset"  # bootstrapped from settings on first use, or never set
    if status.access_expires_at_ms is not None and status.access_expires_at_ms <= now_ms:
        return "expired"
    if status.in_doubt_since_ms is not None:
        return "in_doubt"
    if not status.has_refresh_token:
        return "no_refresh_token"
    if status.last_error:
        return "refresh_failing"  # the last refresh failed; a success clears it
    return "ok"


class TokenCollector(_Guarded):
    """The OA token pair's state, expiry and stored refresh failures (never a token)."""

    def __init__(
        self, accounts: Sequence[str], tokens: AccessTokenManager, *, clock: Clock
    ) -> None:
        self._accounts = list(accounts)
        self._tokens = tokens
        self._clock = clock

    def _collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "zns_token_state",
            "1 for the state of the account's OA token pair, 0 for the others.",
            labels=["account", "state"],
        )
        expires = GaugeMetricFamily(
            "zns_access_token_expires_in_seconds",
            "Seconds until the account's access token expires (negative: expired).",
            labels=["account"],
        )
        failures = GaugeMetricFamily(
            "zns_token_refresh_failures",
            "Failed refreshes recorded for the account in Redis (all processes, ever).",
            labels=["account"],
        )
        now_ms = ms(self._clock())
        for account in self._accounts:
            status = self._tokens.status(account)
            current = token_state(status, now_ms)
            for name in TOKEN_STATES:
                state.add_metric([account, name], 1 if name == current else 0)
            if status.access_expires_at_ms is not None:
                expires.add_metric([account], (status.access_expires_at_ms - now_ms) / 1000)
            failures.add_metric([account], status.refresh_failures)
        yield from (state, expires, failures)


class DailyQuotaCollector(_Guarded):
    """`zns_daily_quota{account}` beside `zns_remaining_quota`, and the reserve kept back."""

    def __init__(self, accounts: Sequence[str], quota: QuotaStore, *, reserve: int) -> None:
        self._accounts = list(accounts)
        self._quota = quota
        self._reserve = reserve

    def _collect(self) -> Iterator[Metric]:
        daily = GaugeMetricFamily(
            "zns_daily_quota", "The OA's daily quota as Zalo last reported it.", labels=["account"]
        )
        reserve = GaugeMetricFamily(
            "zns_quota_reserve",
            "Quota units this worker keeps back: steps park when the counter reaches it.",
            labels=["account"],
        )
        for account in self._accounts:
            value = self._quota.view(account).daily
            if value is not None:
                daily.add_metric([account], value)
            reserve.add_metric([account], self._reserve)
        yield from (daily, reserve)


class ParkedCollector(_Guarded):
    """Parked steps per account, and those a releaser should have re-enqueued by now."""

    def __init__(
        self,
        accounts: Sequence[str],
        parking: ParkingLot,
        client: redis.Redis,
        keys: Keys,
        *,
        clock: Clock,
    ) -> None:
        self._accounts = list(accounts)
        self._parking = parking
        self._client = client
        self._keys = keys
        self._clock = clock

    def _collect(self) -> Iterator[Metric]:
        total = GaugeMetricFamily(
            "zns_parked_jobs", "Steps parked in Redis (all reasons).", labels=["account"]
        )
        overdue = GaugeMetricFamily(
            "zns_parked_overdue_jobs",
            f"Parked steps due more than {OVERDUE_GRACE_S:.0f} s ago and not re-enqueued.",
            labels=["account"],
        )
        late = GaugeMetricFamily(
            "zns_parked_overdue_seconds",
            "How long ago the most overdue parked step was due (0: none is due).",
            labels=["account"],
        )
        now_ms = ms(self._clock())
        for account in self._accounts:
            total.add_metric([account], self._parking.count(account))
            count, lateness_s = self._overdue(account, now_ms)
            overdue.add_metric([account], count)
            late.add_metric([account], lateness_s)
        yield from (total, overdue, late)

    def _overdue(self, account: str, now_ms: int) -> tuple[int, float]:
        """(steps due before the grace, seconds since the soonest was due): one round trip.
        A leased step's score is its lease end, so a releaser at work never counts."""
        key = self._keys.parked(account)
        pipe = self._client.pipeline(transaction=False)
        pipe.zcount(key, "-inf", f"({now_ms - ms(OVERDUE_GRACE_S)}")
        pipe.zrange(key, 0, 0, withscores=True)
        count, soonest = pipe.execute()
        due_ms = soonest[0][1] if soonest else math.inf
        return int(count), max(0.0, (now_ms - due_ms) / 1000) if math.isfinite(due_ms) else 0.0


class DeadLetterCollector(_Guarded):
    """`zns_dead_letters_stored`: the dead letters kept until a replay or a purge (global)."""

    def __init__(self, store: DeadLetterStore) -> None:
        self._store = store

    def _collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "zns_dead_letters_stored",
            "Dead letters kept in Redis (`zns dead-letters list`), every account.",
            value=self._store.count(),
        )


class QueueCollector(_Guarded):
    """`zns_queue_length{queue="zns"}`: messages waiting in the Redis broker's list (the figure
    KEDA scales on), every priority step summed; not published for an AMQP broker."""

    def __init__(self, client: redis.Redis, queue: str = QUEUE) -> None:
        self._client = client
        self._queue = queue

    def _collect(self) -> Iterator[Metric]:
        pipe = self._client.pipeline(transaction=False)
        for step in KOMBU_PRIORITY_STEPS:
            pipe.llen(f"{self._queue}{KOMBU_PRIORITY_SEP}{step}" if step else self._queue)
        gauge = GaugeMetricFamily(
            "zns_queue_length",
            "Messages waiting in the broker queue (Redis broker), not yet taken by a worker.",
            labels=["queue"],
        )
        gauge.add_metric([self._queue], sum(int(n) for n in pipe.execute()))
        yield gauge


class HeartbeatCollector(_Guarded):
    """`zns_worker_heartbeat_age_seconds{kind}` from this process's heartbeat file (what
    `zns check` reads): a worker whose consumer is stuck still answers scrapes, but ages."""

    def __init__(self, path: Path, *, clock: Clock) -> None:
        self._path = path
        self._clock = clock

    def _collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "zns_worker_heartbeat_age_seconds",
            "Seconds since this worker's consumer (consumer_at), maintenance thread "
            "(maintenance_at) or lane feeder (feeder_at) last beat.",
            labels=["kind"],
        )
        state = HealthFile(self._path).read() or {}
        now = self._clock()
        for kind in KINDS:
            at = state.get(kind)
            if isinstance(at, int | float):
                gauge.add_metric([kind], max(0.0, now - at))
        yield gauge


def broker_queue_client(broker_url: str) -> redis.Redis | None:
    """A small client of the Redis broker, or None for a broker that is not Redis."""
    if transport_for(broker_url) is None:
        return None
    return redis.Redis.from_url(
        broker_url, socket_timeout=5, socket_connect_timeout=5, max_connections=2
    )


def collectors(rt: Runtime, *, clock: Clock = system_clock) -> list[Collector]:
    """Every gauge collector of this module, built from a worker's runtime."""
    accounts = rt.settings.account_names()
    found: list[Collector] = [
        PauseCollector(accounts, rt.accounts),
        TokenCollector(accounts, rt.access_tokens, clock=clock),
        DailyQuotaCollector(accounts, rt.quota, reserve=rt.settings.pipeline.quota_reserve),
        ParkedCollector(accounts, rt.parking, rt.redis, rt.keys, clock=clock),
        DeadLetterCollector(rt.dead_letters),
        HeartbeatCollector(rt.settings.celery.health_file, clock=clock),
    ]
    broker = broker_queue_client(rt.settings.effective_broker_url)
    if broker is not None:
        found.append(QueueCollector(broker))
    return found


def register_gauges(rt: Runtime, *, registry: CollectorRegistry = REGISTRY) -> None:
    """Add the gauges to the registry (once per process, beside `register_quota_gauge`)."""
    for collector in collectors(rt):
        registry.register(collector)
