"""The composition root: real collaborators built once per process from Settings."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import SecretStr

from worker import metrics
from worker.access_tokens import AccessTokenManager
from worker.accounts import AccountState
from worker.clock import Clock, system_clock
from worker.crypto import TokenCipher
from worker.deadletters import DeadLetterStore
from worker.idempotency import IdempotencyStore
from worker.journey_tokens import JourneyTokenStore
from worker.keys import Keys
from worker.ordering import StepOrder
from worker.parking import ParkingLot
from worker.policy import ErrorPolicy
from worker.quota import QuotaStore
from worker.ratelimit import RateLimiter
from worker.retry import RetryPolicy
from worker.sender import JourneySender, Stores
from worker.settings import AccountSettings, Settings
from worker.status import StatusStore
from worker.step_gate import StepGate
from worker.step_meta import MetaSeal
from worker.zalo.client import ZaloClient
from worker.zalo.models import AccessTokenPair

#: Connections per thread-local client: one request at a time per thread, plus a spare.
CONNECTIONS_PER_THREAD = 2
LOCK_MARGIN_S = 5.0


class ThreadLocalClients:
    """One ZaloClient per thread: a client shared by many threads serialises on its pool lock
    (measured here: 200 threads on one client ~170 req/s, one client per thread ~1,200 req/s)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # One TLS context for every client: building one per thread costs ~10 ms each.
        self._tls = ssl.create_default_context()
        self._local = threading.local()
        self._all: list[ZaloClient] = []
        self._lock = threading.Lock()

    def __call__(self) -> ZaloClient:
        client: ZaloClient | None = getattr(self._local, "client", None)
        if client is None:
            client = ZaloClient(
                api_base_url=self._settings.api_base_url,
                oauth_base_url=self._settings.oauth_base_url,
                http_settings=self._settings.http,
                max_connections=CONNECTIONS_PER_THREAD,
                verify=self._tls,
            )
            self._local.client = client
            with self._lock:
                self._all.append(client)
        return client

    def close(self) -> None:
        """Close every client this process made."""
        with self._lock:
            for client in self._all:
                client.close()
            self._all.clear()


class _Counting:
    """Counts round trips: redis-py writes each command, pipeline or script call as one packet."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        metrics.REDIS_ROUND_TRIPS.inc()
        super().send_packed_command(command, check_health)  # type: ignore[misc]


class CountingConnection(_Counting, redis.Connection):
    """TCP connection that counts round trips."""


class CountingSSLConnection(_Counting, redis.SSLConnection):
    """TLS connection that counts round trips."""


class CountingUnixConnection(_Counting, redis.UnixDomainSocketConnection):
    """Unix-socket connection that counts round trips."""


def _connection_class(url: str) -> type[redis.Connection] | type[redis.UnixDomainSocketConnection]:
    if url.startswith("rediss://"):
        return CountingSSLConnection
    if url.startswith("unix://"):
        return CountingUnixConnection
    return CountingConnection


#: Read buffer of each state-Redis connection (redis-py's default: 64 KiB).
READ_BUFFER_BYTES = 4096


def redis_client(url: str, *, max_connections: int = 256) -> redis.Redis:
    """A thread-safe Redis client returning str, with a bounded, blocking pool."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
        # Our replies are small (a Lua reply, a token hash): a 4 KiB read buffer per connection
        # instead of 64 KiB, for the ~2 connections per worker thread (a larger reply is read in
        # several reads).
        socket_read_size=READ_BUFFER_BYTES,
        connection_class=_connection_class(url),
    )
    return redis.Redis(connection_pool=pool)


@dataclass
class Runtime:
    """Everything a worker process or the CLI needs, wired together."""

    settings: Settings
    redis: redis.Redis
    keys: Keys
    clients: ThreadLocalClients
    idempotency: IdempotencyStore
    quota: QuotaStore
    accounts: AccountState
    parking: ParkingLot
    dead_letters: DeadLetterStore
    journey_tokens: JourneyTokenStore
    access_tokens: AccessTokenManager
    limiter: RateLimiter
    status: StatusStore
    order: StepOrder
    sender: JourneySender
    meta_seal: MetaSeal

    def close(self) -> None:
        """Release connections."""
        self.clients.close()
        self.redis.close()


def build_runtime(settings: Settings, *, clock: Clock = system_clock) -> Runtime:
    """Compose the runtime from settings; the one place collaborators are chosen."""
    client = redis_client(settings.redis_url, max_connections=settings.celery.concurrency * 4 + 16)
    keys = Keys(settings.key_prefix)
    clients = ThreadLocalClients(settings)
    p = settings.pipeline
    http_budget_s = (
        settings.http.connect_timeout_s
        + settings.http.write_timeout_s
        + settings.http.read_timeout_s
    )
    idempotency = IdempotencyStore(
        client, keys, claim_ttl_s=p.claim_ttl_s, retention_s=p.idempotency_retention_s
    )
    quota = QuotaStore(client, keys, clock=clock, reserve_floor=p.quota_reserve)
    accounts = AccountState(client, keys, clock=clock)
    parking = ParkingLot(client, keys, clock=clock, lease_s=p.park_lease_s)
    cipher = TokenCipher(settings.token_encryption_keys)
    journey_tokens = JourneyTokenStore(
        client,
        keys,
        clock=clock,
        cipher=cipher,
        lock_ttl_s=http_budget_s + LOCK_MARGIN_S,
        wait_s=p.token_wait_s,
        min_life_s=p.journey_token_min_life_s,
    )

    def refresh(account: AccountSettings, refresh_token: SecretStr) -> AccessTokenPair:
        assert account.app_id is not None and account.secret_key is not None
        return clients().refresh_access_token(
            app_id=account.app_id, secret_key=account.secret_key, refresh_token=refresh_token
        )

    access_tokens = AccessTokenManager(
        client,
        keys,
        accounts=settings.account,
        refresher=refresh,
        clock=clock,
        lock_ttl_s=http_budget_s + LOCK_MARGIN_S,
        wait_s=p.token_wait_s,
        refresh_at_fraction=p.refresh_at_fraction,
        cipher=cipher,
    )
    dead_letters = DeadLetterStore(client, keys, clock=clock)
    limiter = RateLimiter(client, keys, accounts=settings.account, max_wait_s=p.rate_max_wait_s)
    status = StatusStore(client, keys, clock=clock, retention_s=p.idempotency_retention_s)
    order = StepOrder(
        client,
        keys,
        clock=clock,
        max_wait_s=p.order_max_wait_s,
        retention_s=p.idempotency_retention_s,
    )
    sender = JourneySender(
        gate=StepGate(
            client,
            keys,
            limiter=limiter,
            clock=clock,
            claim_ttl_s=p.claim_ttl_s,
            retention_s=p.idempotency_retention_s,
            quota_floor=p.quota_reserve,
        ),
        stores=Stores(
            idempotency=idempotency,
            quota=quota,
            accounts=accounts,
            parking=parking,
            dead_letters=dead_letters,
            journey_tokens=journey_tokens,
            status=status,
            order=order,
        ),
        access_tokens=access_tokens,
        policy=ErrorPolicy(
            quota=quota,
            accounts=accounts,
            limiter=limiter,
            retry=RetryPolicy(
                base_delay_s=p.retry_base_delay_s,
                max_delay_s=p.retry_max_delay_s,
                max_transient_retries=p.max_transient_retries,
                max_unknown_retries=p.max_unknown_retries,
            ),
            clock=clock,
        ),
        client=clients,
        default_token_type=lambda name: _token_type(settings, name),
        clock=clock,
    )
    return Runtime(
        settings=settings,
        redis=client,
        keys=keys,
        clients=clients,
        idempotency=idempotency,
        quota=quota,
        accounts=accounts,
        parking=parking,
        dead_letters=dead_letters,
        journey_tokens=journey_tokens,
        access_tokens=access_tokens,
        limiter=limiter,
        status=status,
        order=order,
        sender=sender,
        meta_seal=MetaSeal(client, keys),
    )


def _token_type(settings: Settings, account: str) -> str:
    configured = settings.account(account)
    return configured.token_type if configured else settings.token_type
