"""Settings from the environment (prefix `ZNS_`, nested delimiter `__`, `.env` supported).

Loaded once by `load_settings()` at start and passed down; no other module reads the environment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
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

ENV_PREFIX = "ZNS_"
NESTED_DELIMITER = "__"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
ZALO_API_BASE_URL = "https://business.openapi.zalo.me"
ZALO_OAUTH_BASE_URL = "https://oauth.zaloapp.com"


class HttpSettings(BaseModel):
    """Timeouts for calls to Zalo; explicit so a hung connection never holds a worker slot."""

    connect_timeout_s: float = Field(default=3.0, gt=0)  # a healthy TCP+TLS setup takes < 1 s
    read_timeout_s: float = Field(default=10.0, gt=0)  # Zalo answers in 100-300 ms; 10 s is sick
    write_timeout_s: float = Field(default=5.0, gt=0)
    pool_timeout_s: float = Field(default=5.0, gt=0)  # waiting for a free pooled connection


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
    access_token: SecretStr | None = None  # bootstrap value; Redis holds the live one
    refresh_token: SecretStr | None = None  # bootstrap value; single-use, rotates on refresh
    token_type: TokenType = DEFAULT_TOKEN_TYPE
    http: HttpSettings = HttpSettings()

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

    @property
    def effective_broker_url(self) -> str:
        """The broker Celery connects to: `broker_url`, else the Redis URL."""
        return self.broker_url or self.redis_url


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable behind a validation error location."""
    return ENV_PREFIX + NESTED_DELIMITER.join(str(part) for part in loc).upper()


def load_settings(**overrides: object) -> Settings:
    """Load settings once; a bad value raises ConfigError naming the variable, never the secret."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{env_name(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None
