"""What the sandbox remembers and what its control API exchanges: records and inputs.

Records are dataclasses whose fields are the JSON keys of the `/_sandbox` listings, so the
server (`record_to_json`) and the client (`Record(**json)`) share one definition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from zns_dev.sandbox.config import ENDPOINTS, SEND

TemplateKind = Literal["logistics", "coach_bus", "invalid"]

# token_type -> (the template family it may carry, lifetime in days)
TOKEN_TYPES: Final[Mapping[str, tuple[TemplateKind, int]]] = {
    "token_logistics_7": ("logistics", 7),
    "token_logistics_30": ("logistics", 30),
    "token_coach_bus_7": ("coach_bus", 7),
    "token_coach_bus_30": ("coach_bus", 30),
}
DEFAULT_TOKEN_TYPE: Final = "token_logistics_7"


def template_key(template_id: object) -> str | None:
    """Zalo accepts template ids as strings or numbers; compare them as strings."""
    if isinstance(template_id, bool):
        return None
    if isinstance(template_id, int | str) and str(template_id):
        return str(template_id)
    return None


# -- records: what the sandbox remembers, also the control API's JSON shapes ----------------


@dataclass(slots=True)
class JourneyToken:
    """A journey token issued by get-token; billed when its first message is sent."""

    token: str
    journey_id: str
    app_id: str
    phone: str
    token_type: str
    created_at_ms: int
    expires_at_ms: int
    messages_sent: int = 0

    @property
    def family(self) -> TemplateKind:
        """The template family (logistics / coach_bus) this token may carry."""
        return TOKEN_TYPES[self.token_type][0]


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message the sandbox accepted (what a real Zalo would have delivered)."""

    msg_id: str
    app_id: str
    phone: str
    template_id: str
    template_data: dict[str, Any]
    tracking_id: str | None
    journey_id: str
    sent_time_ms: int


@dataclass(frozen=True, slots=True)
class RefreshAttempt:
    """One call to the OAuth refresh endpoint and how it ended."""

    at_ms: int
    app_id: str
    refresh_token: str
    error: int  # 0 on success
    outcome: str  # "ok" or the OAuth error_name
    reused_consumed: bool  # presented a refresh token that an earlier refresh had consumed


@dataclass(frozen=True, slots=True)
class TokenPair:
    """A successful refresh: the new access token and the new (single-use) refresh token."""

    access_token: str
    refresh_token: str
    expires_in_s: int


@dataclass(frozen=True, slots=True)
class Quota:
    """An OA's daily quota and what is left of it today."""

    daily_quota: int
    remaining_quota: int


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """A successful send: the message and the quota after it."""

    message: SentMessage
    quota: Quota
    first_of_journey: bool = False  # the journey token's first message: the journey is charged


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One webhook event the sandbox sent (or tried to): what, to whom, and how it went."""

    event_name: str
    app_id: str
    subject: str  # msg_id for a delivery, journey_id for a journey event
    timestamp_ms: int
    attempts: int
    http_status: int | None  # of the last attempt; None when it never got an answer
    delivered: bool  # a 2xx was received


@dataclass(frozen=True, slots=True)
class SandboxStats:
    """Counters for the inspection API; `errors` is keyed by Zalo code."""

    calls: dict[str, int]
    sends_accepted: int
    errors: dict[int, int]
    faults: dict[str, int]
    journey_tokens_created: int
    journey_tokens_used: int
    duplicate_tracking_ids: int
    refresh_attempts: int
    refresh_successes: int
    refresh_failures: int
    refresh_token_reuses: int
    quota: dict[str, Quota]
    clock_offset_s: float
    now_ms: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (error codes become string keys)."""
        data = dataclasses.asdict(self)
        data["errors"] = {str(code): n for code, n in self.errors.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SandboxStats:
        """Inverse of `to_json`."""
        fields = dict(data)
        fields["errors"] = {int(code): n for code, n in data["errors"].items()}
        fields["quota"] = {app: Quota(**q) for app, q in data["quota"].items()}
        return cls(**fields)


def record_to_json(
    record: JourneyToken | SentMessage | RefreshAttempt | WebhookDelivery,
) -> dict[str, Any]:
    """A record as a JSON-ready dict whose keys are the dataclass fields."""
    return dataclasses.asdict(record)


# -- inputs of the control API --------------------------------------------------------------


class ScriptedError(BaseModel):
    """The next `times` calls to `endpoint` (optionally for one phone/template) get `error`."""

    model_config = ConfigDict(extra="forbid")

    error: int
    times: int = Field(default=1, ge=1)
    endpoint: str = SEND
    phone: str | None = None
    template_id: str | None = None
    message: str | None = None

    @field_validator("endpoint")
    @classmethod
    def _known_endpoint(cls, value: str) -> str:
        if value not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {value!r}; known: {sorted(ENDPOINTS)}")
        return value

    def matches(self, endpoint: str, phone: object, template_id: object) -> bool:
        """Whether a call with these fields is one this script targets."""
        return (
            self.endpoint == endpoint
            and (self.phone is None or self.phone == phone)
            and (self.template_id is None or self.template_id == template_key(template_id))
        )


OddShape = Literal[
    "no_data", "data_not_object", "no_msg_id", "quota_not_number", "sent_time_not_number"
]


class OddSendAnswer(BaseModel):
    """The next `times` accepted sends are answered `error: 0` in a shape Zalo's documentation
    does not promise (the message is still sent and recorded)."""

    model_config = ConfigDict(extra="forbid")

    shape: OddShape
    times: int = Field(default=1, ge=1)

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """`body` (a successful send's answer) reshaped."""
        data = dict(body["data"])
        if self.shape == "no_data":
            return {k: v for k, v in body.items() if k != "data"}
        if self.shape == "data_not_object":
            return {**body, "data": "ok"}
        if self.shape == "no_msg_id":
            data.pop("msg_id")
        elif self.shape == "quota_not_number":
            data["quota"] = {"remainingQuota": "N/A", "dailyQuota": None}
        else:
            data["sent_time"] = "today"
        return {**body, "data": data}


class TemplateSpec(BaseModel):
    """A template's family (or "invalid": -109) and optional per-OA daily limit (-147)."""

    model_config = ConfigDict(extra="forbid")

    template_id: str
    kind: TemplateKind = "logistics"
    daily_limit: int | None = Field(default=None, ge=0)


class AccountSpec(BaseModel):
    """An Official Account with its app credentials, bootstrap tokens, daily quota and (if it
    is slower than the rest) latency."""

    model_config = ConfigDict(extra="forbid")

    app_id: str
    secret_key: str
    oa_id: str
    access_token: str
    refresh_token: str
    daily_quota: int | None = Field(default=None, ge=0)
    #: How late this OA's API calls are answered, instead of the config's `latency_ms`
    #: (None: the config's); the OAuth refresh keeps `oauth_latency_ms`.
    latency_ms: int | None = Field(default=None, ge=0)


class OaLatency(BaseModel):
    """One OA's own latency for its API calls (None: back to the config's `latency_ms`)."""

    model_config = ConfigDict(extra="forbid")

    app_id: str
    latency_ms: int | None = Field(ge=0)
