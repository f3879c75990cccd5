"""Error policy: what a failed step does next, chosen by the error's action (the CSV's column).

transient / 429 ─► retry with backoff and jitter (429 also cools every pod off)
journey token ───► (renewed inline by the sender) then as transient
daily quota ─────► counter to zero, park until the reset
template quota ──► block the template, park until the reset
night hours ─────► park until 06:00
account ─────────► pause the account, park (never a dead letter for it)
recipient/template/request ─► dead letter
unknown code ────► a few retries, then dead letter with the raw code
"""

from __future__ import annotations

import logging
from typing import Any

from worker import metrics
from worker.clock import Clock, next_quota_reset, night_hours_resume_at
from worker.errors import Action, ZaloError, ZaloRateLimited
from worker.pipeline.outcomes import DeadLetter, Outcome, Park, Retry
from worker.pipeline.retry import RetryPolicy, compute_backoff
from worker.state.pauses import AccountState
from worker.state.quota import QuotaStore
from worker.state.ratelimit import RateLimiter
from worker.status import ParkReason

log = logging.getLogger(__name__)

RETRY_ACTIONS = frozenset(
    {
        Action.RETRY_BACKOFF,
        Action.SLOW_DOWN_AND_RETRY,
        Action.NEW_TOKEN_AND_RETRY_ONCE,  # reached only when the fresh token failed too
        Action.REFRESH_AND_RETRY_ONCE,
    }
)
NIGHT_DAYTIME_RETRY_S = 600.0  # -133 while our clock says day: clocks differ; look again soon


def error_info(exc: ZaloError) -> dict[str, Any]:
    """What the attempt history keeps of an error (never a token)."""
    return {"class": exc.error_class.value, "code": exc.code, "message": str(exc)[:300]}


class ErrorPolicy:
    """Maps a Zalo error to the step's next Outcome, with the side effects it implies."""

    def __init__(
        self,
        *,
        quota: QuotaStore,
        accounts: AccountState,
        limiter: RateLimiter,
        retry: RetryPolicy,
        clock: Clock,
    ) -> None:
        self._quota = quota
        self._accounts = accounts
        self._limiter = limiter
        self._retry = retry
        self._clock = clock

    def decide(self, account: str, template_id: str, retries: int, exc: ZaloError) -> Outcome:
        """The next step for a job that failed with `exc` after `retries` earlier retries."""
        info = error_info(exc)
        metrics.FAILURES.labels(account, exc.error_class.value, str(exc.code)).inc()
        now = self._clock()
        action = exc.action
        if action is Action.PAUSE_ACCOUNT:
            self._accounts.pause(account, reason=str(exc), code=exc.code)
            log.error("account %s paused: %s", account, exc)
            return Park(ParkReason.PAUSED, None, str(exc), info)
        if action is Action.PARK_UNTIL_RESET:
            self._quota.exhaust(account)
            return Park(ParkReason.QUOTA, next_quota_reset(now), str(exc), info)
        if action is Action.PARK_TEMPLATE_UNTIL_RESET:
            until = self._quota.block_template(account, template_id)
            return Park(ParkReason.TEMPLATE_QUOTA, until, str(exc), info)
        if action is Action.PARK_UNTIL_MORNING:
            until = night_hours_resume_at(now, daytime_retry_s=NIGHT_DAYTIME_RETRY_S)
            return Park(ParkReason.NIGHT, until, str(exc), info)
        if action in RETRY_ACTIONS or action is Action.RETRY_THEN_DEAD_LETTER:
            return self._retry_or_give_up(account, retries, exc, info)
        return DeadLetter(str(exc), exc.error_class, exc.code, info)

    def _retry_or_give_up(
        self, account: str, retries: int, exc: ZaloError, info: dict[str, Any]
    ) -> Outcome:
        unknown = exc.action is Action.RETRY_THEN_DEAD_LETTER
        cap = self._retry.max_unknown_retries if unknown else self._retry.max_transient_retries
        if retries >= cap:
            reason = f"gave up after {retries + 1} attempts: {exc}"
            return DeadLetter(reason, exc.error_class, exc.code, info)
        delay = compute_backoff(
            retries, base_s=self._retry.base_delay_s, max_s=self._retry.max_delay_s
        )
        if isinstance(exc, ZaloRateLimited):
            self._limiter.cool_off(account, exc.retry_after_s)  # every pod slows down
            delay = max(delay, exc.retry_after_s)
        return Retry(min(delay, self._retry.max_delay_s), str(exc), info)
