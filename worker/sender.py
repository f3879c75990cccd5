"""JourneySender: one journey step through every gate to Zalo and back. Knows nothing of Celery.

    claim idempotency key ─► pause / template / quota gates (one Lua call) ─► access token
      ─► journey token (reuse, or create once) ─► send ─► record ─► mark sent

Each failure becomes an Outcome chosen by the error's `action` (see `worker/zalo/error-codes.csv`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from worker import metrics
from worker.access_tokens import AccessGrant, AccessTokenManager
from worker.accounts import AccountState
from worker.clock import Clock, next_quota_reset, night_hours_resume_at
from worker.deadletters import DeadLetterStore
from worker.errors import AccessTokenError, AccountError, Action, TransientApiError, ZaloError
from worker.idempotency import ClaimState, IdempotencyStore
from worker.job import Job
from worker.journey_tokens import CachedToken, JourneyTokenStore, TokenRef
from worker.outcomes import AlreadyDead, DeadLetter, Duplicate, Outcome, Park, Retry, Sent
from worker.parking import ParkingLot, ParkReason
from worker.quota import Gate, QuotaStore
from worker.retry import RetryPolicy, compute_backoff
from worker.zalo.client import ZaloClient

log = logging.getLogger(__name__)
T = TypeVar("T")
#: A claim held elsewhere usually ends in well under a second (the holder finishes): look again
#: soon, but never later than the claim's own expiry.
BUSY_MIN_DELAY_S = 0.5
BUSY_MAX_DELAY_S = 5.0
#: Sends tried per step with successive access tokens before the account is paused.
ACCESS_ROUNDS = 3
NIGHT_DAYTIME_RETRY_S = 600.0  # -133 while our clock says day: clocks differ; look again soon

RETRY_ACTIONS = frozenset(
    {
        Action.RETRY_BACKOFF,
        Action.SLOW_DOWN_AND_RETRY,
        Action.NEW_TOKEN_AND_RETRY_ONCE,  # reached only when the fresh token failed too
        Action.REFRESH_AND_RETRY_ONCE,
    }
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """Who is trying, and how many retries came before."""

    task_id: str
    retries: int = 0
    probe: bool = False  # a canary for a paused account: may pass the pause gate
    history: tuple[dict[str, Any], ...] = ()  # earlier attempts' errors, kept with the job


def error_info(exc: ZaloError) -> dict[str, Any]:
    """What the attempt history keeps of an error (never a token)."""
    return {"class": exc.error_class.value, "code": exc.code, "message": str(exc)[:300]}


class JourneySender:
    """Sends journey steps; composed once per process from real collaborators."""

    def __init__(
        self,
        *,
        idempotency: IdempotencyStore,
        quota: QuotaStore,
        accounts: AccountState,
        parking: ParkingLot,
        dead_letters: DeadLetterStore,
        journey_tokens: JourneyTokenStore,
        access_tokens: AccessTokenManager,
        client: Callable[[], ZaloClient],
        default_token_type: Callable[[str], str],
        retry: RetryPolicy,
        clock: Clock,
    ) -> None:
        self._idem = idempotency
        self._quota = quota
        self._accounts = accounts
        self._parking = parking
        self._dead_letters = dead_letters
        self._tokens = journey_tokens
        self._access = access_tokens
        self._client = client
        self._token_type = default_token_type
        self._retry = retry
        self._clock = clock

    def process(self, job: Job, attempt: Attempt) -> Outcome:
        """Claim the job, run it through the gates, record the outcome."""
        claim = self._idem.claim(job.account, job.idempotency_key, owner=attempt.task_id)
        if claim.state is ClaimState.SENT:
            metrics.DUPLICATES.labels(job.account).inc()
            return Duplicate({**(claim.result or {}), "status": "duplicate"})
        if claim.state is ClaimState.DEAD:
            return AlreadyDead({**(claim.result or {}), "status": "dead_lettered"})
        if claim.state is ClaimState.BUSY:
            return Retry(
                delay_s=min(max(claim.retry_after_s, BUSY_MIN_DELAY_S), BUSY_MAX_DELAY_S),
                reason="another worker holds this job's claim",
                error={"class": "busy", "code": None, "message": "claimed elsewhere"},
            )
        try:
            outcome = self._through_gates(job, attempt)
        except BaseException:
            self._idem.release(job.account, job.idempotency_key, owner=attempt.task_id)
            raise
        self._record(job, attempt, outcome)
        _count(job.account, outcome)
        return outcome

    def _record(self, job: Job, attempt: Attempt, outcome: Outcome) -> None:
        """Persist the outcome, then finish the claim: a crash in between redoes, never loses."""
        key, owner = job.idempotency_key, attempt.task_id
        if isinstance(outcome, Sent):
            self._idem.mark_sent(job.account, key, owner=owner, result=outcome.result)
            if attempt.probe:
                self._resume_after_probe(job.account)
        elif isinstance(outcome, DeadLetter):
            self._dead_letters.add(
                reason=outcome.reason,
                error_class=outcome.error_class,
                code=outcome.code,
                kwargs=job.kwargs(),
                account=job.account,
                idempotency_key=key,
                history=[*attempt.history, *([outcome.error] if outcome.error else [])],
                task_id=owner,
            )
            result = {"status": "dead_lettered", "reason": outcome.reason, "code": outcome.code}
            self._idem.mark_dead(job.account, key, owner=owner, result=result)
        elif isinstance(outcome, Park):
            history = [*attempt.history, *([outcome.error] if outcome.error else [])]
            self._parking.park(
                job.account,
                reason=outcome.reason,
                due_at=outcome.due_at,
                kwargs=job.kwargs(),
                meta={"history": history},
                detail=outcome.detail,
            )
            self._idem.release(job.account, key, owner=owner)
        else:
            self._idem.release(job.account, key, owner=owner)

    def _through_gates(self, job: Job, attempt: Attempt) -> Outcome:
        try:
            gate = self._reserve(job, attempt)
        except ZaloError as exc:  # the quota probe failed; nothing was reserved
            return self._on_error(job, attempt, exc)
        if gate is not Gate.OK:
            return self._parked_by_gate(job, gate)
        try:
            return self._send_reserved(job)
        except ZaloError as exc:
            # Zalo surely did not send: give the unit back; outcome unknown: keep it spent.
            self._quota.release(job.account, give_back=not exc.outcome_unknown)
            return self._on_error(job, attempt, exc)

    def _reserve(self, job: Job, attempt: Attempt) -> Gate:
        gate = self._quota.reserve(job.account, job.template_id, probe=attempt.probe)
        if gate is Gate.UNKNOWN:
            self.probe_quota(job.account, first=True)
            gate = self._quota.reserve(job.account, job.template_id, probe=attempt.probe)
        return Gate.EXHAUSTED if gate is Gate.UNKNOWN else gate

    def probe_quota(self, account: str, *, first: bool = False) -> int | None:
        """Ask Zalo for the quota (free of charge) and fold it in; returns our counter.

        `first`: the counter is unknown; concurrent first probes keep the first figure."""
        quota = self._with_access(account, lambda grant: self._client().quota(grant.token))
        if quota.remaining_quota is None:
            return None
        fold = self._quota.init if first else self._quota.set
        return fold(account, quota.remaining_quota, quota.daily_quota)

    def _parked_by_gate(self, job: Job, gate: Gate) -> Outcome:
        now = self._clock()
        if gate is Gate.PAUSED:
            pause = self._accounts.status(job.account)
            detail = pause.reason if pause else "account paused"
            return Park(ParkReason.PAUSED, None, detail)
        if gate is Gate.TEMPLATE_BLOCKED:
            return Park(ParkReason.TEMPLATE_QUOTA, next_quota_reset(now), "template daily limit")
        return Park(ParkReason.QUOTA, next_quota_reset(now), "daily quota used up")

    def _send_reserved(self, job: Job) -> Sent:
        """Send with one access-token refresh and one journey-token renewal allowed inline."""
        return self._with_access(job.account, lambda grant: self._send_renewing_token(job, grant))

    def _with_access(self, account: str, call: Callable[[AccessGrant], T]) -> T:
        """Run `call` with the access token; on rejection refresh (single-flight) and retry.

        A fresh token may be rejected legitimately: it died again while this step waited. So a
        step tries up to `ACCESS_ROUNDS` generations; if the last one rejected had worked for
        someone, tokens are just churning (retry later); if it never worked anywhere, Zalo
        rejects fresh tokens: an account problem (pause).
        """
        grant = self._access.current(account)
        for round_ in range(ACCESS_ROUNDS):
            try:
                result = call(grant)
            except AccessTokenError as exc:
                if round_ == ACCESS_ROUNDS - 1:
                    raise self._rejected_too_often(account, grant, exc) from exc
                grant = self._access.refresh_after_rejection(account, grant)
            else:
                self._access.mark_working(account, grant.generation)
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _rejected_too_often(
        self, account: str, grant: AccessGrant, exc: AccessTokenError
    ) -> ZaloError:
        if self._access.has_worked(account, grant.generation):
            return TransientApiError(
                f"access tokens expiring faster than this step could use them ({exc})",
                endpoint=exc.endpoint,
                code=exc.code,
            )
        return AccountError(
            f"access token rejected {ACCESS_ROUNDS} times, each time right after a refresh, "
            f"and never accepted ({exc})",
            endpoint=exc.endpoint,
            code=exc.code,
        )

    def _send_renewing_token(self, job: Job, grant: AccessGrant) -> Sent:
        ref = self._ref(job)
        try:
            return self._send_once(job, ref, grant)
        except ZaloError as exc:
            if exc.action is not Action.NEW_TOKEN_AND_RETRY_ONCE:
                raise
            log.info("journey token rejected (%s); creating a new one", exc.code)
        return self._send_once(job, ref, grant)

    def _send_once(self, job: Job, ref: TokenRef, grant: AccessGrant) -> Sent:
        client = self._client()
        token = self._tokens.get_or_create(
            ref,
            lambda: client.get_journey_token(
                grant.token, phone=job.phone, token_type=ref.token_type
            ),
        )
        if token.created_now:
            metrics.JOURNEY_TOKENS.labels(job.account).inc()
        try:
            with metrics.SEND_SECONDS.labels(job.account).time():
                result = client.send_template(
                    grant.token,
                    token.token,
                    phone=job.phone,
                    template_id=job.template_id,
                    template_data=job.template_data,
                    tracking_id=job.tracking_id,
                )
        except ZaloError as exc:
            if exc.action is Action.NEW_TOKEN_AND_RETRY_ONCE:
                self._tokens.drop(ref, token.journey_id)
            raise
        if result.quota is not None and result.quota.remaining_quota is not None:
            self._quota.observe(job.account, result.quota.remaining_quota, result.quota.daily_quota)
        else:
            self._quota.release(job.account, give_back=False)
        return Sent(self._result(job, token, result.msg_id, result.sent_time_ms))

    def _result(self, job: Job, token: CachedToken, msg_id: str, sent_time: int) -> dict[str, Any]:
        return {
            "status": "sent",
            "msg_id": msg_id,
            "sent_time": sent_time,
            "journey_id": token.journey_id,
            "tracking_id": job.tracking_id,
            "account": job.account,
            "token_created": token.created_now,
        }

    def _ref(self, job: Job) -> TokenRef:
        token_type = job.token_type or self._token_type(job.account)
        return TokenRef(job.account, job.phone, job.journey, token_type)

    def _on_error(self, job: Job, attempt: Attempt, exc: ZaloError) -> Outcome:
        info = error_info(exc)
        metrics.FAILURES.labels(job.account, exc.error_class.value, str(exc.code)).inc()
        now = self._clock()
        action = exc.action
        if action is Action.PAUSE_ACCOUNT:
            self._accounts.pause(job.account, reason=str(exc), code=exc.code)
            log.error("account %s paused: %s", job.account, exc)
            return Park(ParkReason.PAUSED, None, str(exc), info)
        if action is Action.PARK_UNTIL_RESET:
            self._quota.exhaust(job.account)
            return Park(ParkReason.QUOTA, next_quota_reset(now), str(exc), info)
        if action is Action.PARK_TEMPLATE_UNTIL_RESET:
            until = self._quota.block_template(job.account, job.template_id)
            return Park(ParkReason.TEMPLATE_QUOTA, until, str(exc), info)
        if action is Action.PARK_UNTIL_MORNING:
            until = night_hours_resume_at(now, daytime_retry_s=NIGHT_DAYTIME_RETRY_S)
            return Park(ParkReason.NIGHT, until, str(exc), info)
        if action in RETRY_ACTIONS or action is Action.RETRY_THEN_DEAD_LETTER:
            return self._retry_or_give_up(attempt, exc, info)
        return DeadLetter(str(exc), exc.error_class.value, exc.code, info)

    def _retry_or_give_up(self, attempt: Attempt, exc: ZaloError, info: dict[str, Any]) -> Outcome:
        unknown = exc.action is Action.RETRY_THEN_DEAD_LETTER
        cap = self._retry.max_unknown_retries if unknown else self._retry.max_transient_retries
        if attempt.retries >= cap:
            reason = f"gave up after {attempt.retries + 1} attempts: {exc}"
            return DeadLetter(reason, exc.error_class.value, exc.code, info)
        delay = compute_backoff(
            attempt.retries, base_s=self._retry.base_delay_s, max_s=self._retry.max_delay_s
        )
        retry_after = getattr(exc, "retry_after_s", 0.0)
        delay = min(max(delay, retry_after), self._retry.max_delay_s)
        return Retry(delay, str(exc), info)

    def _resume_after_probe(self, account: str) -> None:
        if self._accounts.resume(account):
            woken = self._parking.wake(account, {ParkReason.PAUSED})
            log.warning(
                "account %s resumed after a successful probe; %d jobs woken", account, woken
            )


def _count(account: str, outcome: Outcome) -> None:
    """One metric per outcome."""
    if isinstance(outcome, Sent):
        metrics.MESSAGES_SENT.labels(account).inc()
    elif isinstance(outcome, Retry):
        metrics.RETRIES.labels(account, str(outcome.error.get("class"))).inc()
    elif isinstance(outcome, Park):
        metrics.PARKED.labels(account, outcome.reason.value).inc()
    elif isinstance(outcome, DeadLetter):
        metrics.DEAD_LETTERS.labels(account, outcome.error_class).inc()
