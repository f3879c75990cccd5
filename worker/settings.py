"""Settings from the environment (prefix `ZNS_`, nested delimiter `__`, `.env` supported).

Loaded once by `load_settings()` at start and passed down; no other module reads the environment.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigError

TokenType = Literal[
    "token_logistics_7", "token_logistics_30", "token_coach_bus_7", "token_coach_bus_30"
]
TOKEN_TYPES: tuple[TokenType, ...] = (
    "token_logistics_7",
    "token_logistics_30",
    "token_coach_bus_7",
    "token_coach_bus_30",
)
DEFAULT_TOKEN_TYPE: TokenType = "token_logistics_7"  # Zalo's own default for get-token

DEFAULT_ACCOUNT = "default"
#: An account's name: part of every Redis key of its own.
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: The heartbeat file a worker keeps fresh and `zns check` reads (worker/ops/health.py).
DEFAULT_HEALTH_FILE = Path(tempfile.gettempdir()) / "zns-worker-health.json"
ENV_PREFIX = "ZNS_"
NESTED_DELIMITER = "__"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: Share of rate_per_s kept free for the jitter between a rate-limit slot and the send (Field doc).
DEFAULT_RATE_HEADROOM = 0.05
ZALO_API_BASE_URL = "https://business.openapi.zalo.me"
ZALO_OAUTH_BASE_URL = "https://oauth.zaloapp.com"

#: Bulk enqueue: journey steps per broker message (`PipelineSettings.steps_per_message`).
DEFAULT_STEPS_PER_MESSAGE = 10
#: An account's steps in flight at once, across every pod (`AccountSettings.max_in_flight`).
DEFAULT_MAX_IN_FLIGHT = 100
#: Zalo answering an account's sends slower than this on average makes the account "slow"
#: (`PipelineSettings.slow_answer_s`).
DEFAULT_SLOW_ANSWER_S = 1.0


class HttpSettings(BaseModel):
    """Timeouts for calls to Zalo; explicit so a hung connection never holds a worker slot."""

    connect_timeout_s: float = Field(default=3.0, gt=0)  # a healthy TCP+TLS setup takes < 1 s
    read_timeout_s: float = Field(default=10.0, gt=0)  # Zalo answers in 100-300 ms; 10 s is sick
    write_timeout_s: float = Field(default=5.0, gt=0)
    pool_timeout_s: float = Field(default=5.0, gt=0)  # waiting for a free pooled connection


class CelerySettings(BaseModel):
    """Broker and worker timing. All of it must agree: see `Settings._consistent`."""

    #: Redis-broker redelivery of unacked jobs. Short, so a killed worker's jobs go out again
    #: within minutes, not after Redis's default hour; long enough to exceed any task or countdown.
    visibility_timeout_s: int = Field(default=240, ge=30)
    soft_time_limit_s: int = Field(default=60, ge=5)  # a step is a few HTTP calls of <= 10 s
    time_limit_s: int = Field(default=90, ge=10)
    #: Threads per worker process: the work is I/O bound (docs/performance.md, concurrency).
    concurrency: int = Field(default=200, ge=1, le=1000)
    health_file: Path = DEFAULT_HEALTH_FILE  # heartbeat file read by `zns check`
    metrics_port: int = Field(default=9808, ge=0, le=65535)  # 0 disables /metrics
    result_expires_s: int = Field(default=86_400, ge=60)
    task_events: bool = True  # task events for Flower (see celery_app.py for their cost)
    #: RabbitMQ only: `quorum` declares `zns` as a quorum queue (replicated, survives a node
    #: loss) on a topic exchange, retries through RabbitMQ's delayed delivery (celery_app.py).
    queue_type: Literal["classic", "quorum"] = "classic"


class PipelineSettings(BaseModel):
    """The journey-step pipeline's knobs."""

    #: A claim outlives the hard time limit, so a live worker's claim is never stolen, and a dead
    #: worker's claim frees the job soon after its redelivery.
    claim_ttl_s: int = Field(default=150, ge=10)
    idempotency_retention_s: int = Field(default=7 * 86_400, ge=3600)  # recognise re-enqueues
    retry_base_delay_s: float = Field(default=2.0, gt=0)
    retry_max_delay_s: float = Field(default=60.0, gt=0)
    max_transient_retries: int = Field(default=8, ge=0)
    max_unknown_retries: int = Field(default=3, ge=0)
    journey_token_min_life_s: int = Field(
        default=300, ge=0
    )  # never reuse a token this close to expiry
    token_wait_s: float = Field(default=20.0, gt=0)  # waiting for another worker's token creation
    quota_reserve: int = Field(default=0, ge=0)  # units kept back from this worker's jobs
    maintenance_interval_s: float = Field(default=5.0, gt=0)  # parked jobs are due within this
    quota_probe_interval_s: float = Field(default=60.0, gt=0)  # GET /message/quota while exhausted
    pause_probe_interval_s: float = Field(default=900.0, gt=0)  # one canary send for a paused OA
    park_lease_s: float = Field(default=60.0, gt=0)
    #: A step waits in its thread at most this long for a rate-limit slot, else it joins its
    #: account's lane (worker/state/lanes.py), holding no thread, until a feeder releases it.
    rate_max_wait_s: float = Field(default=1.0, ge=0)
    #: How often each worker process's feeder looks at the lanes (worker/ops/feeder.py).
    lane_feed_interval_s: float = Field(default=0.1, gt=0, le=5)
    #: How far ahead a feeder takes rate-limit slots for the steps it releases: a released step
    #: waits up to this long in its thread for its slot.
    lane_horizon_s: float = Field(default=0.5, gt=0, le=10)
    #: A lane entry a feeder took and did not publish within this goes back to its lane.
    lane_lease_s: float = Field(default=30.0, ge=1)
    #: Steps of one account a feeder keeps released to the queue and not begun yet: enough to
    #: keep a worker process's threads busy, few enough that other accounts' steps never wait
    #: behind much of one account's bulk run.
    lane_max_released: int = Field(default=200, ge=1)
    #: While Zalo's answers to an account's sends average longer than this (not only because
    #: the process is busy: worker/pipeline/answer_times.py), its steps arriving from the queue
    #: are refused at its in-flight cap (`max_in_flight`) and wait in its lane.
    slow_answer_s: float = Field(default=DEFAULT_SLOW_ANSWER_S, gt=0)
    #: Refresh the OA access token proactively after this share of its life (~20 h of 25 h).
    refresh_at_fraction: float = Field(default=0.8, gt=0, lt=1)
    release_batch: int = Field(default=500, ge=1)
    #: Bulk enqueue: journey steps per broker message (tasks/batch.py); 1: one message per step.
    #: A worker thread runs a message's steps one after the other, so keep enough messages for
    #: every thread: a run of S steps keeps S / steps_per_message threads busy.
    steps_per_message: int = Field(default=DEFAULT_STEPS_PER_MESSAGE, ge=1, le=100)
    #: A numbered step waits (parked, no worker slot held) at most this long for the lower steps of
    #: its journey; then it is sent anyway (logged, counted). Ten minutes covers retries with
    #: backoff and a maintenance pass or two; longer holds (quota, night) hold the lower steps too.
    order_max_wait_s: float = Field(default=600.0, gt=0)


class WebhookSettings(BaseModel):
    """`zns webhooks`: where it listens and what it accepts from Zalo."""

    host: str = "127.0.0.1"  # behind the ingress / reverse proxy that terminates TLS
    port: int = Field(default=8780, ge=0, le=65_535)
    path: str = Field(default="/zalo/webhook", pattern=r"^/[A-Za-z0-9_./-]*$")
    #: Zalo's events are < 2 KiB; anything this large is not from Zalo: 413 before reading it.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Oldest event timestamp accepted. Zalo redelivers an event it got no 200 for for about an
    #: hour; whether a redelivery is re-signed with a new timestamp is not published, so the
    #: window covers the whole series. Replays inside it are caught by the dedupe key.
    max_age_s: int = Field(default=7200, ge=1)
    max_future_s: int = Field(default=300, ge=0)  # clock skew tolerated the other way
    metrics_port: int = Field(default=9809, ge=0, le=65_535)  # 0 disables /metrics

    @property
    def dedupe_ttl_s(self) -> int:
        """How long an event id is remembered: every timestamp still accepted, plus a minute."""
        return self.max_age_s + self.max_future_s + 60


class AccountSettings(BaseModel):
    """One Official Account: its app credentials and bootstrap tokens."""

    app_id: str | None = None
    secret_key: SecretStr | None = None
    oa_id: str | None = None  # tells apart OAs that share one app in webhook events
    #: The "OA Secret Key" of the app's webhook page (signs events); default: `secret_key`.
    webhook_secret_key: SecretStr | None = None
    access_token: SecretStr | None = None  # bootstrap value; Redis holds the live one
    refresh_token: SecretStr | None = None  # bootstrap value; single-use, rotates on refresh
    token_type: TokenType = DEFAULT_TOKEN_TYPE
    rate_per_s: float | None = Field(default=None, gt=0)  # sends/s across every pod; None: no cap
    rate_burst: int = Field(default=1, ge=1)  # sends allowed back to back above the rate
    #: Slots are spaced for rate_per_s x (1 - this): sends reach Zalo a little after their slot,
    #: and that jitter must not push any second above rate_per_s (docs/performance.md).
    rate_headroom: float = Field(default=DEFAULT_RATE_HEADROOM, ge=0, lt=0.5)
    #: Steps in flight at once (from claim to Zalo's answer) across every pod; more wait in the
    #: account's lane. Bounds the threads an account whose Zalo answers slowly can hold.
    #: 0: no cap.
    max_in_flight: int = Field(default=DEFAULT_MAX_IN_FLIGHT, ge=0)


class Settings(BaseSettings):
    """Everything the worker, producer and CLI need, from `ZNS_*` variables or `.env`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    redis_url: str = DEFAULT_REDIS_URL
    broker_url: str | None = None  # None: use redis_url; amqp:// works too
    key_prefix: str = Field(default="zns", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    api_base_url: str = ZALO_API_BASE_URL
    oauth_base_url: str = ZALO_OAUTH_BASE_URL
    app_id: str | None = None
    secret_key: SecretStr | None = None
    oa_id: str | None = None
    webhook_secret_key: SecretStr | None = None  # default: secret_key
    access_token: SecretStr | None = None  # bootstrap value; Redis holds the live one
    refresh_token: SecretStr | None = None  # bootstrap value; single-use, rotates on refresh
    token_type: TokenType = DEFAULT_TOKEN_TYPE
    rate_per_s: float | None = Field(default=None, gt=0)  # the default account's global send rate
    rate_burst: int = Field(default=1, ge=1)
    rate_headroom: float = Field(default=DEFAULT_RATE_HEADROOM, ge=0, lt=0.5)
    max_in_flight: int = Field(default=DEFAULT_MAX_IN_FLIGHT, ge=0)  # the default account's
    log_format: Literal["json", "text", "auto"] = "auto"  # auto: text on a terminal, else JSON
    log_level: str = Field(default="INFO", pattern=r"^(?i:debug|info|warning|error|critical)$")
    log_task_lines: bool = False  # Celery's "received"/"succeeded" INFO lines: 2 per job, costly
    #: Comma-separated Fernet keys (newest first); when set, tokens are encrypted in Redis.
    token_encryption_keys: SecretStr | None = None
    http: HttpSettings = HttpSettings()
    celery: CelerySettings = CelerySettings()
    pipeline: PipelineSettings = PipelineSettings()
    webhooks: WebhookSettings = WebhookSettings()
    #: Further OAs by name (ZNS_ACCOUNTS__<NAME>__APP_ID …); "default" is the top-level values.
    accounts: dict[str, AccountSettings] = {}

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("redis://", "rediss://", "amqp://", "amqps://")
        ):
            raise ValueError("must start with redis://, rediss://, amqp:// or amqps://")
        return value

    @field_validator("api_base_url", "oauth_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """Timeouts that contradict each other would lose or duplicate jobs: refuse them."""
        c, p = self.celery, self.pipeline
        if c.time_limit_s <= c.soft_time_limit_s:
            raise ValueError("ZNS_CELERY__TIME_LIMIT_S must exceed ZNS_CELERY__SOFT_TIME_LIMIT_S")
        if p.claim_ttl_s <= c.time_limit_s:
            raise ValueError("ZNS_PIPELINE__CLAIM_TTL_S must exceed ZNS_CELERY__TIME_LIMIT_S")
        if p.token_wait_s + p.rate_max_wait_s >= c.soft_time_limit_s:
            # The threads pool enforces no time limit: the claim ttl (> the hard limit) outlives
            # a step only if the step's own waits fit inside the limits.
            raise ValueError(
                "ZNS_PIPELINE__TOKEN_WAIT_S + ZNS_PIPELINE__RATE_MAX_WAIT_S must be below "
                "ZNS_CELERY__SOFT_TIME_LIMIT_S"
            )
        if c.visibility_timeout_s <= p.claim_ttl_s + p.retry_max_delay_s:
            raise ValueError(
                "ZNS_CELERY__VISIBILITY_TIMEOUT_S must exceed ZNS_PIPELINE__CLAIM_TTL_S + "
                "ZNS_PIPELINE__RETRY_MAX_DELAY_S (no countdown may outlive it)"
            )
        if c.visibility_timeout_s <= c.soft_time_limit_s + c.time_limit_s:
            # A bulk batch starts no step after the soft limit; its last step ends by the hard one.
            raise ValueError(
                "ZNS_CELERY__VISIBILITY_TIMEOUT_S must exceed ZNS_CELERY__SOFT_TIME_LIMIT_S + "
                "ZNS_CELERY__TIME_LIMIT_S (how long a batch of steps may hold its message)"
            )
        if p.retry_max_delay_s < p.retry_base_delay_s:
            raise ValueError("ZNS_PIPELINE__RETRY_MAX_DELAY_S must be >= RETRY_BASE_DELAY_S")
        if c.queue_type == "quorum" and not self.effective_broker_url.startswith("amqp"):
            raise ValueError(
                "ZNS_CELERY__QUEUE_TYPE=quorum needs a RabbitMQ broker (ZNS_BROKER_URL=amqp://…): "
                "quorum queues are a RabbitMQ feature"
            )
        return self

    def account(self, name: str) -> AccountSettings | None:
        """The settings of account `name`, or None when no such account is configured."""
        if name in self.accounts:
            return self.accounts[name]
        if name == DEFAULT_ACCOUNT:
            return AccountSettings(
                app_id=self.app_id,
                secret_key=self.secret_key,
                oa_id=self.oa_id,
                webhook_secret_key=self.webhook_secret_key,
                access_token=self.access_token,
                refresh_token=self.refresh_token,
                token_type=self.token_type,
                rate_per_s=self.rate_per_s,
                rate_burst=self.rate_burst,
                rate_headroom=self.rate_headroom,
                max_in_flight=self.max_in_flight,
            )
        return None

    def account_names(self) -> list[str]:
        """Every configured account, "default" first."""
        return [DEFAULT_ACCOUNT, *sorted(set(self.accounts) - {DEFAULT_ACCOUNT})]

    @property
    def effective_broker_url(self) -> str:
        """The broker Celery connects to: `broker_url`, else the Redis URL."""
        return self.broker_url or self.redis_url


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable behind a validation error location."""
    return ENV_PREFIX + NESTED_DELIMITER.join(str(part) for part in loc).upper()


def _problem(loc: tuple[int | str, ...], msg: str) -> str:
    return f"{env_name(loc)}: {msg}" if loc else msg


def load_settings(**overrides: object) -> Settings:
    """Load settings once; a bad value raises ConfigError naming the variable, never the secret."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(_problem(err["loc"], err["msg"]) for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None
