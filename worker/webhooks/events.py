"""Zalo's webhook events: the envelope every event shares and the five we act on.

Parsed tolerantly, like Zalo's API answers: numbers may come as strings, the OA id as `oa_id`,
`oaId` or `sender.id`, the journey id as `journey_id` or `journeyId`; times are epoch ms, and a
time small enough to be epoch seconds is read as such. Each event has a stable id (`event_id`):
a redelivery of the same fact has the same id even if Zalo re-signs it with a new timestamp.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

USER_RECEIVED_MESSAGE: Final = "user_received_message"
JOURNEY_ACKNOWLEDGED: Final = "event_journey_acknowledged"
JOURNEY_TIME_OUT: Final = "event_journey_time_out"
CHANGE_OA_DAILY_QUOTA: Final = "change_oa_daily_quota"
PERMISSION_REVOKED: Final = "permission_revoked"
HANDLED: Final = frozenset(
    {
        USER_RECEIVED_MESSAGE,
        JOURNEY_ACKNOWLEDGED,
        JOURNEY_TIME_OUT,
        CHANGE_OA_DAILY_QUOTA,
        PERMISSION_REVOKED,
    }
)
#: Below this an epoch time is in seconds (10^11 ms is 1973; 10^11 s is the year 5138).
SECONDS_BELOW: Final = 10**11

JourneyKind = Literal["charged", "timed_out"]


class BadEvent(ValueError):
    """The body is not an event we can read; the message names the field, never its value."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every event carries: who sent it, which event, when (and the raw fields)."""

    app_id: str
    event_name: str
    timestamp: str  # as written in the body: it is part of the signed text
    timestamp_ms: int
    oa_id: str | None
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Delivered:
    """user_received_message: the message reached the customer's phone."""

    msg_id: str
    tracking_id: str | None
    delivered_at_ms: int

    @property
    def event_id(self) -> str:
        """A message is delivered once."""
        return f"delivered:{self.msg_id}"


@dataclass(frozen=True, slots=True)
class JourneyEvent:
    """event_journey_acknowledged (the journey is charged) or event_journey_time_out."""

    journey_id: str
    kind: JourneyKind
    at_ms: int

    @property
    def event_id(self) -> str:
        """A journey is charged once and times out once."""
        return f"{self.kind}:{self.journey_id}"


@dataclass(frozen=True, slots=True)
class DailyQuotaChanged:
    """change_oa_daily_quota: the OA's daily quota moved (`quota: {prev_value, new_value}`)."""

    new_daily: int
    prev_daily: int | None
    at_ms: int

    @property
    def event_id(self) -> str:
        """One change at one time (applying it twice is harmless too: see QuotaStore.rebase)."""
        return f"quota:{self.at_ms}:{self.new_daily}"


@dataclass(frozen=True, slots=True)
class PermissionRevoked:
    """permission_revoked: the OA withdrew the app's permission; sending must stop."""

    at_ms: int

    @property
    def event_id(self) -> str:
        """One revocation at one time (pausing twice keeps the first pause)."""
        return f"revoked:{self.at_ms}"


Event = Delivered | JourneyEvent | DailyQuotaChanged | PermissionRevoked


def parse_envelope(body: bytes) -> Envelope:
    """The envelope of a webhook body; BadEvent when it is not JSON or lacks a common field."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadEvent("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadEvent("the body is not a JSON object")
    timestamp = _scalar_text(data, "timestamp")
    if not _is_digits(timestamp):
        raise BadEvent("timestamp must be epoch milliseconds")
    return Envelope(
        app_id=_scalar_text(data, "app_id"),
        event_name=_scalar_text(data, "event_name"),
        timestamp=timestamp,
        timestamp_ms=epoch_ms(int(timestamp)),
        oa_id=_oa_id(data),
        fields=data,
    )


def parse_event(envelope: Envelope) -> Event:
    """The event behind an envelope whose name is in HANDLED; BadEvent when a field is missing."""
    name, fields, at_ms = envelope.event_name, envelope.fields, envelope.timestamp_ms
    if name == USER_RECEIVED_MESSAGE:
        return _delivered(_object(fields, "message"), at_ms)
    if name in (JOURNEY_ACKNOWLEDGED, JOURNEY_TIME_OUT):
        kind: JourneyKind = "charged" if name == JOURNEY_ACKNOWLEDGED else "timed_out"
        return JourneyEvent(_journey_id(fields), kind, at_ms)
    if name == CHANGE_OA_DAILY_QUOTA:
        quota = _object(fields, "quota")
        prev = _int(quota, "prev_value") if quota.get("prev_value") is not None else None
        return DailyQuotaChanged(_int(quota, "new_value"), prev, at_ms)
    if name == PERMISSION_REVOKED:
        return PermissionRevoked(at_ms)
    raise BadEvent(f"event {name!r} is not one we handle")


def epoch_ms(value: int) -> int:
    """Epoch milliseconds from a time Zalo wrote in milliseconds (or, now and then, seconds)."""
    return value * 1000 if value < SECONDS_BELOW else value


def _delivered(message: Mapping[str, Any], at_ms: int) -> Delivered:
    delivered = epoch_ms(_int(message, "delivery_time")) if "delivery_time" in message else at_ms
    tracking = message.get("tracking_id")
    return Delivered(
        msg_id=_scalar_text(message, "msg_id", "message.msg_id"),
        tracking_id=tracking if isinstance(tracking, str) and tracking else None,
        delivered_at_ms=delivered,
    )


def _journey_id(fields: Mapping[str, Any]) -> str:
    key = "journey_id" if "journey_id" in fields else "journeyId"
    return _scalar_text(fields, key, "journey_id")


def _oa_id(data: Mapping[str, Any]) -> str | None:
    sender = data.get("sender")
    candidates = [data.get("oa_id"), data.get("oaId")]
    if isinstance(sender, dict):
        candidates.append(sender.get("id"))
    for value in candidates:
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def _object(fields: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = fields.get(key)
    if not isinstance(value, dict):
        raise BadEvent(f"{key} must be an object")
    return value


def _scalar_text(fields: Mapping[str, Any], key: str, name: str | None = None) -> str:
    """A non-empty string, or an integer written as a number (Zalo mixes both)."""
    value = fields.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    raise BadEvent(f"{name or key} is missing or not a string")


def _int(fields: Mapping[str, Any], key: str) -> int:
    text = _scalar_text(fields, key)
    if not _is_digits(text):
        raise BadEvent(f"{key} must be a non-negative integer")
    return int(text)


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()
