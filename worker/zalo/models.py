"""Response models tolerant of Zalo's quirks: numbers as strings or numbers, keys with stray spaces.

Pydantic's lax mode already turns `"123"` into `123`; the only extra is stripping key whitespace
(check-token documents `"tokenType "` with a trailing space).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)


class ZaloModel(BaseModel):
    """Base: ignore unknown fields, accept keys with surrounding whitespace."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _strip_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {str(key).strip(): value for key, value in data.items()}
        return data


def _or_none(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """The field as Zalo sent it when it has the expected type, else None (unknown)."""
    try:
        return handler(value)
    except ValidationError:
        return None


#: A number Zalo reports for information only: what cannot be read as one is unknown (None).
OptionalInt = Annotated[int | None, WrapValidator(_or_none)]
#: An id Zalo reports: a string (a number is taken as its digits); anything else is unknown.
OptionalId = Annotated[str | None, Field(coerce_numbers_to_str=True), WrapValidator(_or_none)]


class JourneyToken(ZaloModel):
    """A journey token as returned by get-token (top level, no `data`)."""

    token: SecretStr
    journey_id: str


class Quota(ZaloModel):
    """Daily quota as Zalo reports it (both numbers may arrive as strings)."""

    daily_quota: OptionalInt = Field(default=None, alias="dailyQuota")
    remaining_quota: OptionalInt = Field(default=None, alias="remainingQuota")


class SendResult(ZaloModel):
    """What a send Zalo accepted (`error: 0`) returns. `error: 0` is the acceptance: a field
    missing or of the wrong type is unknown (None), never a reason to send again."""

    msg_id: OptionalId = None
    sent_time_ms: OptionalInt = Field(default=None, alias="sent_time")
    quota: Annotated[Quota | None, WrapValidator(_or_none)] = None

    def oddities(self) -> list[str]:
        """What an accepted send's answer lacked (for the log)."""
        missing = [("msg_id", self.msg_id), ("sent_time", self.sent_time_ms)]
        odd = [f"no readable {name}" for name, value in missing if value is None]
        if self.quota is None or self.quota.remaining_quota is None:
            odd.append("no readable remainingQuota")
        return odd


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
