"""Response models tolerant of Zalo's quirks: numbers as strings or numbers, keys with stray spaces.

Pydantic's lax mode already turns `"123"` into `123`; the only extra is stripping key whitespace
(check-token documents `"tokenType "` with a trailing space).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class ZaloModel(BaseModel):
    """Base: ignore unknown fields, accept keys with surrounding whitespace."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _strip_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {str(key).strip(): value for key, value in data.items()}
        return data


class JourneyToken(ZaloModel):
    """A journey token as returned by get-token (top level, no `data`)."""

    token: SecretStr
    journey_id: str


class Quota(ZaloModel):
    """Daily quota as Zalo reports it (both numbers may arrive as strings)."""

    daily_quota: int | None = Field(default=None, alias="dailyQuota")
    remaining_quota: int | None = Field(default=None, alias="remainingQuota")


class SendResult(ZaloModel):
    """What a successful send returns."""

    msg_id: str
    sent_time_ms: int = Field(alias="sent_time")
    quota: Quota | None = None


class TokenInfo(ZaloModel):
    """check-token's answer about a journey token (never the token itself)."""

    app_id: str = Field(alias="appId")
    oa_id: str = Field(alias="oaId")
    token_type: str = Field(alias="tokenType")
    created_at_ms: int = Field(alias="createdAt")
    expired_at_ms: int = Field(alias="expiredAt")


class MessageStatus(ZaloModel):
    """Delivery status: -1 unknown, 0 pending, 1 delivered."""

    status: int
    delivery_time_ms: int | None = Field(default=None, alias="delivery_time")


class AccessTokenPair(ZaloModel):
    """A fresh OA token pair from the OAuth host; the old refresh token is dead from now on."""

    access_token: SecretStr = Field(min_length=1)
    refresh_token: SecretStr = Field(min_length=1)
    expires_in_s: int = Field(alias="expires_in", gt=0)
