"""The composition root: real collaborators built once per process from Settings."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from pydantic import SecretStr

from worker.clock import Clock, system_clock
from worker.pipeline.answer_times import AnswerTimes
from worker.pipeline.policy import ErrorPolicy
from worker.pipeline.retry import RetryPolicy
from worker.pipeline.sender import JourneySender, Stores
from worker.pipeline.step_meta import MetaSeal
from worker.settings import AccountSettings, Settings
from worker.state.connection import redis_client
from worker.state.deadletters import DeadLetterStore
from worker.state.idempotency import IdempotencyStore
from worker.state.keys import Keys
from worker.state.lanes import LaneStore
from worker.state.ordering import StepOrder
from worker.state.parking import ParkingLot
from worker.state.pauses import AccountState
from worker.state.quota import QuotaStore
from worker.state.ratelimit import RateLimiter
from worker.state.step_gate import StepGate
from worker.state.step_status import StatusStore
from worker.tokens.access import AccessTokenManager
from worker.tokens.crypto import TokenCipher
from worker.tokens.journey import JourneyTokenStore
from worker.zalo.models import AccessTokenPair
from worker.zalo.thread_clients import ThreadLocalClients

LOCK_MARGIN_S = 5.0


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
    lanes: LaneStore

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
    idempotency = IdempotencyStore(client, keys, retention_s=p.idempotency_retention_s)
    quota = QuotaStore(client, keys, clock=clock)
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
    lanes = LaneStore(client, keys, lease_s=p.lane_lease_s, grace_s=p.lane_lease_s)
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
            max_in_flight=lambda name: _max_in_flight(settings, name),
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
            lanes=lanes,
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
        answer_times=AnswerTimes(slow_s=p.slow_answer_s),
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
        lanes=lanes,
    )


def _max_in_flight(settings: Settings, account: str) -> int:
    configured = settings.account(account)
    return configured.max_in_flight if configured else 0


def _token_type(settings: Settings, account: str) -> str:
    configured = settings.account(account)
    return configured.token_type if configured else settings.token_type
