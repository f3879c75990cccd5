"""WebhookReceiver: one Zalo event in, one answer out. Knows no HTTP framework.

Checks in order, each refusal stores nothing:

    parse the envelope ─ not JSON / a common field missing ───► 400 malformed
    find the account by app_id (+ OA id) ─ none ──────────────► 403 unknown_app
    X-ZEvent-Signature ─ missing or wrong ────────────────────► 401 bad_signature
    timestamp ─ older than max age or too far ahead ──────────► 401 stale
    event name ─ not one we act on ───────────────────────────► 200 ignored
    event fields ─ missing ───────────────────────────────────► 400 malformed
    claim the event id (SET NX) ─ already seen ───────────────► 200 duplicate
    record it (status, quota or pause) ───────────────────────► 200 accepted
                                       ─ Redis fails ─────────► 500 error (claim released)

Two Redis round trips for an accepted event (the claim and the record), one for a duplicate.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Final, Protocol

from worker import metrics
from worker.clock import Clock, ms
from worker.state.pauses import AccountState
from worker.state.quota import QuotaStore
from worker.webhooks.directory import AccountDirectory, WebhookAccount
from worker.webhooks.events import (
    HANDLED,
    BadEvent,
    DailyQuotaChanged,
    Delivered,
    Envelope,
    Event,
    JourneyEvent,
    PermissionRevoked,
    parse_envelope,
    parse_event,
)
from worker.webhooks.seen import SeenEvents
from worker.webhooks.signature import verify

log = logging.getLogger(__name__)

UNPARSED: Final = "unparsed"  # metric label of a body that is not an event at all
OTHER: Final = "other"  # metric label of an event name we do not act on
PAUSE_REASON: Final = "permission_revoked: the OA withdrew the app's permission (webhook)"


class StatusRecorder(Protocol):
    """The part of the status store the receiver writes to (worker/status.py)."""

    def mark_delivered(
        self, account: str, msg_id: str, delivered_at_ms: int, tracking_id: str | None
    ) -> bool:
        """Record a delivery (kept until the send is recorded, if it is not yet); False when it
        was already recorded."""

    def mark_journey_event(self, account: str, journey_id: str, event: str, at_ms: int) -> None:
        """Record that a journey was charged or timed out."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The HTTP status and what became of the event."""

    status: int
    outcome: str
    detail: str | None = None

    def body(self) -> dict[str, Any]:
        """`{"result": outcome}` for a 2xx, else `{"error": outcome, "detail": ...}`."""
        if self.status < 300:  # noqa: PLR2004
            return {"result": self.outcome}
        return {"error": self.outcome, "detail": self.detail}


IGNORED: Final = Answer(200, "ignored")
DUPLICATE: Final = Answer(200, "duplicate")
UNKNOWN_APP: Final = Answer(403, "unknown_app", "no account is configured for this app / OA")
BAD_SIGNATURE: Final = Answer(401, "bad_signature", "X-ZEvent-Signature is missing or wrong")
STALE: Final = Answer(401, "stale", "the timestamp is outside the accepted window")
TOO_LARGE: Final = Answer(413, "too_large", "the body exceeds the size limit")
ERROR: Final = Answer(500, "error", "could not record the event; send it again")


@dataclass(frozen=True, slots=True)
class Window:
    """Which event timestamps are fresh enough."""

    max_age_s: float
    max_future_s: float

    def admits(self, timestamp_ms: int, now: float) -> bool:
        """True when the timestamp is neither too old nor too far ahead of `now`."""
        now_ms = ms(now)
        return now_ms - ms(self.max_age_s) <= timestamp_ms <= now_ms + ms(self.max_future_s)


class WebhookReceiver:
    """Verifies, dedupes and records Zalo's events."""

    def __init__(
        self,
        *,
        directory: AccountDirectory,
        seen: SeenEvents,
        status: StatusRecorder,
        quota: QuotaStore,
        accounts: AccountState,
        window: Window,
        clock: Clock,
    ) -> None:
        self._directory = directory
        self._seen = seen
        self._status = status
        self._quota = quota
        self._accounts = accounts
        self._window = window
        self._clock = clock

    def handle(self, body: bytes, signature: str | None) -> Answer:
        """The answer to one webhook request (counted in zns_webhook_events_total)."""
        answer, label = self._handle(body, signature)
        metrics.WEBHOOK_EVENTS.labels(label, answer.outcome).inc()
        if answer.status >= 400:  # noqa: PLR2004
            log.warning("webhook refused: %s (%s)", answer.outcome, label)
        return answer

    def refuse_too_large(self) -> Answer:
        """The body was too large to read (counted like any other answer)."""
        metrics.WEBHOOK_EVENTS.labels(UNPARSED, TOO_LARGE.outcome).inc()
        log.warning("webhook refused: %s", TOO_LARGE.outcome)
        return TOO_LARGE

    def _handle(self, body: bytes, signature: str | None) -> tuple[Answer, str]:
        try:
            envelope = parse_envelope(body)
        except BadEvent as exc:
            return Answer(400, "malformed", str(exc)), UNPARSED
        label = envelope.event_name if envelope.event_name in HANDLED else OTHER
        account = self._directory.resolve(envelope.app_id, envelope.oa_id)
        if account is None:
            return UNKNOWN_APP, label
        refusal = self._authenticate(envelope, account, body, signature)
        if refusal is not None:
            return refusal, label
        if label == OTHER:
            return IGNORED, label
        try:
            event = parse_event(envelope)
        except BadEvent as exc:
            return Answer(400, "malformed", str(exc)), label
        return self._record_once(account.name, event), label

    def _authenticate(
        self, envelope: Envelope, account: WebhookAccount, body: bytes, signature: str | None
    ) -> Answer | None:
        signed = verify(
            signature,
            app_id=envelope.app_id,
            body=body,
            timestamp=envelope.timestamp,
            secret_key=account.secret_key.get_secret_value(),
        )
        if not signed:
            return BAD_SIGNATURE
        if not self._window.admits(envelope.timestamp_ms, self._clock()):
            return STALE
        return None

    def _record_once(self, account: str, event: Event) -> Answer:
        if not self._seen.claim(account, event.event_id):
            return DUPLICATE
        try:
            return Answer(200, self._record(account, event))
        except Exception:
            log.exception("recording a webhook event failed; its redelivery will be accepted")
            with contextlib.suppress(Exception):  # Redis down: the claim expires with its TTL
                self._seen.forget(account, event.event_id)
            return ERROR

    def _record(self, account: str, event: Event) -> str:
        """Store the event; returns the outcome ("accepted", or "duplicate" for a delivery the
        status store already had: our dedupe key expired, the status outlives it)."""
        if isinstance(event, Delivered):
            recorded = self._status.mark_delivered(
                account, event.msg_id, event.delivered_at_ms, event.tracking_id
            )
            return "accepted" if recorded else DUPLICATE.outcome
        if isinstance(event, JourneyEvent):
            self._status.mark_journey_event(account, event.journey_id, event.kind, event.at_ms)
        elif isinstance(event, DailyQuotaChanged):
            self._quota.rebase(account, event.new_daily, prev_daily=event.prev_daily)
        elif isinstance(event, PermissionRevoked):
            self._accounts.pause(account, reason=PAUSE_REASON)
        return "accepted"
