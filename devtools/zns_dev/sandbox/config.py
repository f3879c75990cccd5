"""SandboxConfig: everything the sandbox Zalo can be told at start-up, validated once.

The fields in `RUNTIME_FIELDS` can also be changed while it runs (`POST /_sandbox/faults`).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The Zalo calls the sandbox answers, by the short names used in stats, scripts and faults.
GET_TOKEN: Final = "get-token"
SEND: Final = "send"
CHECK_TOKEN: Final = "check-token"
QUOTA: Final = "quota"
STATUS: Final = "status"
REFRESH: Final = "refresh"
ENDPOINTS: Final = frozenset({GET_TOKEN, SEND, CHECK_TOKEN, QUOTA, STATUS, REFRESH})

DEFAULT_PORT: Final = 8765
# Zalo's OA access token lives ~25 h; the API says expires_in "90000".
DEFAULT_ACCESS_TOKEN_TTL_S: Final = 90_000
# Zalo's refresh token lives 3 months.
DEFAULT_REFRESH_TOKEN_TTL_S: Final = 90 * 86_400
# Large enough that a benchmark never hits -144 unless it asks to.
DEFAULT_DAILY_QUOTA: Final = 1_000_000

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegativeInt = Annotated[int, Field(ge=0)]

# Settings that `POST /_sandbox/faults` may change at runtime (the rest need a restart).
RUNTIME_FIELDS: Final = frozenset(
    {
        "latency_ms",
        "oauth_latency_ms",
        "night_hours",
        "access_token_max_sends",
        "refresh_reuse_revokes",
        "fault_100",
        "fault_5xx",
        "fault_429",
        "fault_drop",
        "fault_drop_after_send",
        "stall_rate",
        "stall_ms",
        "fault_endpoints",
        "webhook_url",
        "webhook_delay_ms",
        "webhook_attempts",
        "webhook_retry_ms",
    }
)
# Zalo reports a delivery within seconds of the send; the default keeps the demo realistic
# without slowing tests (the worker records its send well within it).
DEFAULT_WEBHOOK_DELAY_MS: Final = 200
DEFAULT_WEBHOOK_ATTEMPTS: Final = 4  # Zalo redelivers an event that got no 200, a few times
DEFAULT_WEBHOOK_RETRY_MS: Final = 500  # first redelivery delay, doubled each time


class SandboxConfig(BaseModel):
    """How the sandbox listens, how slow and faulty it is, and its default Official Account."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65_535)] = DEFAULT_PORT  # 0: pick a free port
    latency_ms: NonNegativeInt = 0  # added to every Zalo API call (an OA may have its own)
    oauth_latency_ms: NonNegativeInt = 0  # added to the refresh call only
    daily_quota: NonNegativeInt = DEFAULT_DAILY_QUOTA
    access_token_ttl_s: Annotated[int, Field(gt=0)] = DEFAULT_ACCESS_TOKEN_TTL_S
    refresh_token_ttl_s: Annotated[int, Field(gt=0)] = DEFAULT_REFRESH_TOKEN_TTL_S
    access_token_max_sends: Annotated[int, Field(gt=0)] | None = None  # then -124
    night_hours: bool = False  # -133 for sends 22:00-06:00 Vietnam time
    # Reusing a consumed refresh token also kills the current one: the grant is gone.
    refresh_reuse_revokes: bool = False

    fault_100: Rate = 0.0  # JSON error -100 with HTTP 200
    fault_5xx: Rate = 0.0  # HTTP 502/503 with an HTML body
    fault_429: Rate = 0.0  # HTTP 429
    fault_drop: Rate = 0.0  # close the connection, no response, nothing processed
    fault_drop_after_send: Rate = 0.0  # send processed, then the connection is closed
    stall_rate: Rate = 0.0  # this share of calls waits stall_ms more
    stall_ms: NonNegativeInt = 0
    # Which calls the faults hit (fault_drop_after_send only ever hits "send").
    fault_endpoints: frozenset[str] = ENDPOINTS
    seed: int | None = None  # for the fault dice; ids are random regardless

    # Signed webhook events (user_received_message, event_journey_acknowledged) after each
    # accepted send, POSTed to this URL; None: no webhooks.
    webhook_url: str | None = None
    webhook_delay_ms: NonNegativeInt = DEFAULT_WEBHOOK_DELAY_MS  # send -> delivery event
    webhook_attempts: Annotated[int, Field(ge=1, le=10)] = DEFAULT_WEBHOOK_ATTEMPTS
    webhook_retry_ms: NonNegativeInt = DEFAULT_WEBHOOK_RETRY_MS

    app_id: str = "sandbox-app"
    secret_key: str = "sandbox-secret"
    oa_id: str = "sandbox-oa"
    access_token: str = "sandbox-access-token"
    refresh_token: str = "sandbox-refresh-token"

    @field_validator("fault_endpoints")
    @classmethod
    def _known_endpoints(cls, value: frozenset[str]) -> frozenset[str]:
        unknown = value - ENDPOINTS
        if unknown:
            raise ValueError(f"unknown endpoints {sorted(unknown)}; known: {sorted(ENDPOINTS)}")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        return value


def is_loopback(host: str) -> bool:
    """True when `host` names this machine only (127.0.0.0/8, ::1 or "localhost")."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url(host: str, port: int) -> str:
    """The URL a client on this machine uses to reach a sandbox bound to host:port."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - reaching a wildcard bind, not binding
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
