"""JourneySender: one journey step through every gate to Zalo and back. Knows nothing of Celery.

    [order (numbered steps only; one Redis call: park while a lower step of the journey is due)]
    begin (one Redis call: claim, pause / template / quota gates, rate slot, quota unit,
           access token, journey token)
      ─► journey token (reuse, or create exactly once) ─► send
      ─► finish (one Redis call: settle quota, mark sent, record status, wake waiting steps)

Two Redis round trips per sent message in steady state (three for a numbered step). Each failure
becomes an Outcome chosen by `ErrorPolicy` from the error's action (`worker/zalo/error-codes.csv`).
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, assert_never

import redis

from worker import metrics
from worker.clock import Clock, next_quota_reset
from worker.errors import WAITS, Action, ErrorClass, ZaloError
from worker.job import Job, Lane
from worker.pipeline.answer_times import AnswerTimes
from worker.pipeline.outcomes import (
    AlreadyDead,
    DeadLetter,
    Duplicate,
    Outcome,
    Park,
    Queued,
    Retry,
    Sent,
)
from worker.pipeline.policy import ErrorPolicy
from worker.settings import DEFAULT_SLOW_ANSWER_S
from worker.state.deadletters import DeadLetterStore
from worker.state.idempotency import IdempotencyStore
from worker.state.lanes import LaneStore
from worker.state.ordering import StepOrder
from worker.state.parking import ParkingLot
from worker.state.pauses import AccountState
from worker.state.quota import QuotaStore
from worker.state.step_gate import (
    LATE_SLOT_MS,
    Begin,
    Finished,
    ReleasedSlot,
    Started,
    StepGate,
    StepKeys,
)
from worker.state.step_status import StatusStore
from worker.status import ParkReason
from worker.tokens.access import AccessGrant, AccessTokenManager
from worker.tokens.journey import CachedToken, JourneyTokenStore, TokenRef
from worker.zalo.client import ZaloClient
from worker.zalo.models import Quota, SendResult

log = logging.getLogger(__name__)

#: A claim held elsewhere usually ends in well under a second (the holder finishes): look again
#: soon, but never later than the claim's own expiry.
BUSY_MIN_DELAY_S = 0.5
BUSY_MAX_DELAY_S = 5.0
#: A step deferred while another step creates its journey token looks again after this.
TOKEN_WAIT_DELAY_S = 0.5
#: Pauses between attempts to record a send while Redis restarts: ~15 s in all, a tenth of the
#: claim ttl that keeps a redelivery of the same step away meanwhile.
SETTLE_PAUSES_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True, slots=True)
class Attempt:
    """Who is trying, and how many retries came before."""

    task_id: str
    retries: int = 0
    #: Who holds the step's claim: unique per execution, not the task id. After a broker
    #: connection loss the same task id can run twice at once (the message is redelivered while
    #: the first run goes on); a claim owned by the task id would let one run release the
    #: other's claim, and both would send.
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    probe: bool = False  # a canary for a paused account: may pass the pause gate
    #: Come back later (a Retry of class TOKEN_WAIT, nothing taken) instead of waiting while
    #: another step creates the journey token: a bulk batch runs its other steps meanwhile.
    defer_token_wait: bool = False
    history: tuple[dict[str, Any], ...] = ()  # earlier attempts' errors, kept with the job
    #: Released from its account's lane by a feeder, with the rate-limit slot taken for it.
    released: ReleasedSlot | None = None


@dataclass(frozen=True, slots=True)
class Stores:
    """The Redis-backed stores the sender writes outcomes to."""

    idempotency: IdempotencyStore
    quota: QuotaStore
    accounts: AccountState
    parking: ParkingLot
    dead_letters: DeadLetterStore
    journey_tokens: JourneyTokenStore
    status: StatusStore
    order: StepOrder
    lanes: LaneStore


class JourneySender:
    """Sends journey steps; composed once per process from real collaborators."""

    def __init__(
        self,
        *,
        gate: StepGate,
        stores: Stores,
        access_tokens: AccessTokenManager,
        policy: ErrorPolicy,
        client: Callable[[], ZaloClient],
        default_token_type: Callable[[str], str],
        clock: Clock,
        sleep: Callable[[float], None] = time.sleep,
        on_wake: Callable[[str], object] | None = None,
        answer_times: AnswerTimes | None = None,
    ) -> None:
        self._gate = gate
        self._s = stores
        self._access = access_tokens
        self._policy = policy
        self._client = client
        self._token_type = default_token_type
        self._clock = clock
        self._sleep = sleep
        #: Called with the account when a finished step woke waiting steps of its journey (the
        #: worker re-enqueues them at once instead of at its next maintenance pass).
        self.on_wake = on_wake
        self.answer_times = answer_times or AnswerTimes(slow_s=DEFAULT_SLOW_ANSWER_S)

    def process(self, job: Job, attempt: Attempt) -> Outcome:
        """Run one step: order, begin, send, record."""
        check = self._s.order.check(job, {"history": list(attempt.history)})
        if check.parked:
            if attempt.released is not None:
                self._s.lanes.leave_in_flight(job.account, attempt.released.task_id)
            parked = Park(ParkReason.ORDER, check.due_at, check.detail, stored=True)
            _count(job.account, parked)
            return parked
        ref = self._ref(job)
        step = StepKeys(
            job.account, job.idempotency_key, job.template_id, self._s.journey_tokens.key(ref)
        )
        try:
            started = self._begin(step, attempt, job.priority)
        except ZaloError as exc:  # the first quota probe failed; nothing was taken
            outcome = self._policy.decide(job.account, job.template_id, attempt.retries, exc)
        else:
            outcome = self._after_begin(job, ref, step, attempt, started)
        self._record(job, attempt, outcome)
        _count(job.account, outcome)
        return outcome

    def probe_quota(self, account: str, *, first: bool = False) -> int | None:
        """Ask Zalo for the quota (free of charge) and fold it in; returns our counter.

        `first`: the counter is unknown; concurrent first probes keep the first figure."""
        settled_before = self._s.quota.settled(account)
        quota = self._access.call(account, lambda grant: self._client().quota(grant.token))
        if quota.remaining_quota is None:
            return None
        fold = self._s.quota.init if first else self._s.quota.set
        return fold(
            account, quota.remaining_quota, quota.daily_quota, settled_before=settled_before
        )

    # -- begin -----------------------------------------------------------------------------------

    def _begin(self, step: StepKeys, attempt: Attempt, lane: Lane) -> Started:
        begin = functools.partial(
            self._gate.begin,
            step,
            owner=attempt.owner,
            probe=attempt.probe,
            defer_token_wait=attempt.defer_token_wait,
            lane=lane,
            released=attempt.released,
            # a released step's place was counted at its release; others are refused at the cap
            # only while Zalo is slow for their account or not known fast yet (answer_times.py)
            enforce_cap=attempt.released is None and self.answer_times.capped(step.account),
        )
        started = begin()
        if started.state is Begin.UNKNOWN:
            try:
                self.probe_quota(step.account, first=True)
            except BaseException:
                if attempt.released is not None:  # it stayed counted in flight for the probe
                    self._s.lanes.leave_in_flight(step.account, attempt.released.task_id)
                raise
            started = begin()
        return started

    def _after_begin(
        self, job: Job, ref: TokenRef, step: StepKeys, attempt: Attempt, started: Started
    ) -> Outcome:
        state = started.state
        if state is Begin.SENT:
            metrics.DUPLICATES.labels(job.account).inc()
            return Duplicate({**(started.result or {}), "status": "duplicate"})
        if state is Begin.DEAD:
            return AlreadyDead({**(started.result or {}), "status": "dead_lettered"})
        if state in (Begin.LIMITED, Begin.QUEUED):
            why = "rate" if state is Begin.LIMITED else started.why
            return Queued(why, front=attempt.released is not None)
        if state in (Begin.BUSY, Begin.TOKEN_BUSY):
            return _not_now(started)
        if state is not Begin.OK:
            return self._parked_by_gate(job, state)
        try:
            return self._send_started(job, ref, step, attempt, started)
        except BaseException:
            self._give_back(job, attempt)
            raise

    def _give_back(self, job: Job, attempt: Attempt) -> None:
        """Nothing was sent: release the claim and the quota unit `begin` took."""
        self._s.idempotency.release(job.account, job.idempotency_key, owner=attempt.owner)
        self._s.quota.release(job.account, give_back=True)

    def _parked_by_gate(self, job: Job, state: Begin) -> Outcome:
        now = self._clock()
        if state is Begin.PAUSED:
            pause = self._s.accounts.status(job.account)
            detail = pause.reason if pause else "account paused"
            return Park(ParkReason.PAUSED, None, detail)
        if state is Begin.TEMPLATE_BLOCKED:
            return Park(ParkReason.TEMPLATE_QUOTA, next_quota_reset(now), "template daily limit")
        return Park(ParkReason.QUOTA, next_quota_reset(now), "daily quota used up")

    # -- send ------------------------------------------------------------------------------------

    def _send_started(
        self, job: Job, ref: TokenRef, step: StepKeys, attempt: Attempt, started: Started
    ) -> Outcome:
        # Our rate-limit slot, maybe a little ahead; None: taken just before the send.
        slot_at = (
            self._slot_time(started.delay_s, started.slot_at_s) if started.slot_taken else None
        )
        grant = self._access.from_stored(started.access_token, started.generation)
        cached = self._s.journey_tokens.from_fields(started.journey)
        try:
            result, token = self._access.call(
                job.account,
                lambda g: self._send_renewing_token(job, ref, g, cached, slot_at),
                first=grant,
            )
        except _NoSlot:
            self._give_back(job, attempt)
            return Queued("rate", front=attempt.released is not None)
        except ZaloError as exc:
            # Zalo surely did not send: give the unit back; outcome unknown: keep it spent.
            self._s.quota.release(job.account, give_back=not exc.outcome_unknown)
            return self._policy.decide(job.account, job.template_id, attempt.retries, exc)
        sent = self._result(job, token, result)
        finished = self._settle_sent(step, job, attempt.owner, sent, result.quota)
        self._woke(job.account, finished.woken)
        if finished.enqueued_at_ms is not None:
            waited = max(self._clock() - finished.enqueued_at_ms / 1000, 0.0)
            metrics.ENQUEUE_TO_SENT.labels(job.account, job.priority.value).observe(waited)
        return Sent(sent)

    def _wait_for_slot(self, account: str, slot_at: float | None) -> None:
        """The rate-limit slot is for the send itself: wait for it after any journey-token call.
        A step that had no token stored takes its slot only now (`begin_step.lua`): a slot
        taken before the get-token call would often have passed by the time of the send, and
        such late sends bunch up above the rate."""
        if slot_at is not None and self._clock() > slot_at + LATE_SLOT_MS / 1000:
            slot_at = None  # passed while the journey token was made: bunched sends, take anew
        if slot_at is None:
            slot = self._gate.slot(account)
            if not slot.granted:
                raise _NoSlot(slot.delay_s)
            slot_at = self._slot_time(slot.delay_s, slot.at_s)
        delay = slot_at - self._clock()
        if delay > 0:
            metrics.LIMITER_WAIT_SECONDS.labels(account).observe(delay)
            self._sleep(delay)

    def _slot_time(self, delay_s: float, at_s: float) -> float:
        """When to send: at the slot's own time (Redis's clock, synchronised with ours), so
        that a reply read late under load does not push the send later; never later than the
        delay from now, never before now."""
        now = self._clock()
        latest = now + delay_s
        return min(latest, max(at_s, now)) if at_s else latest

    def _settle_sent(
        self, step: StepKeys, job: Job, owner: str, sent: dict[str, Any], quota: Quota | None
    ) -> Finished:
        """Record a send Zalo accepted, riding out a Redis restart: giving up here would release
        the claim and send the message again. If Redis stays away, the claim (held until its
        ttl) still turns a redelivery away meanwhile; the step is reported sent either way."""
        for pause in (*SETTLE_PAUSES_S, None):
            try:
                return self._gate.finish_sent(step, job, owner=owner, result=sent, quota=quota)
            except (redis.RedisError, OSError) as exc:
                if pause is None:
                    metrics.SENT_NOT_RECORDED.labels(step.account).inc()
                    log.error("sent but not recorded: state Redis unreachable (%s)", exc)
                    return Finished(woken=0)
                self._sleep(pause)
        return Finished(woken=0)

    def _send_renewing_token(
        self,
        job: Job,
        ref: TokenRef,
        grant: AccessGrant,
        cached: CachedToken | None,
        slot_at: float | None,
    ) -> tuple[SendResult, CachedToken]:
        """Send; a rejected journey token is dropped and replaced once, inline (the second send
        takes a slot of its own)."""
        try:
            return self._send_once(job, ref, grant, cached, slot_at)
        except ZaloError as exc:
            if exc.action is not Action.NEW_TOKEN_AND_RETRY_ONCE:
                raise
            log.info("journey token rejected (%s); creating a new one", exc.code)
        return self._send_once(job, ref, grant, None, None)

    def _send_once(
        self,
        job: Job,
        ref: TokenRef,
        grant: AccessGrant,
        cached: CachedToken | None,
        slot_at: float | None,
    ) -> tuple[SendResult, CachedToken]:
        client = self._client()
        token = cached or self._s.journey_tokens.get_or_create(
            ref,
            lambda: client.get_journey_token(
                grant.token, phone=job.phone, token_type=ref.token_type
            ),
            known_missing=True,  # `begin` read none (or Zalo just rejected it)
        )
        if token.created_now:
            metrics.JOURNEY_TOKENS.labels(job.account).inc()
        self._wait_for_slot(job.account, slot_at)
        started = time.perf_counter()
        try:
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
                self._s.journey_tokens.drop(ref, token.journey_id)
            raise
        finally:
            answered_s = time.perf_counter() - started
            metrics.SEND_SECONDS.labels(job.account).observe(answered_s)
            self.answer_times.record(job.account, answered_s)
        return result, token

    def _result(self, job: Job, token: CachedToken, result: SendResult) -> dict[str, Any]:
        return {
            "status": "sent",
            "msg_id": result.msg_id,
            "sent_time": result.sent_time_ms,
            "journey_id": token.journey_id,
            "tracking_id": job.tracking_id,
            "account": job.account,
            "token_created": token.created_now,
        }

    def _ref(self, job: Job) -> TokenRef:
        token_type = job.token_type or self._token_type(job.account)
        return TokenRef(job.account, job.phone, job.journey, token_type)

    # -- record ----------------------------------------------------------------------------------

    def _record(self, job: Job, attempt: Attempt, outcome: Outcome) -> None:
        """Persist the outcome, then finish the claim: a crash in between redoes, never loses.
        (A send is recorded by `finish_sent` itself; begin gives back claims it did not keep.)"""
        key, owner = job.idempotency_key, attempt.owner
        match outcome:
            case Sent() if attempt.probe:
                self._resume_after_probe(job.account)
            case DeadLetter():
                self._dead_letter(job, attempt, outcome)
            case Park():
                history = [*attempt.history, *_entry(outcome.error)]
                self._s.parking.park(
                    job.account,
                    reason=outcome.reason,
                    due_at=outcome.due_at,
                    kwargs=job.kwargs(),
                    meta={"history": history},
                    detail=outcome.detail,
                )
                self._s.status.mark_parked(job, reason=outcome.reason.value, due_at=outcome.due_at)
                self._s.idempotency.release(job.account, key, owner=owner)
            case Retry() if outcome.error_class not in WAITS:
                self._s.idempotency.release(job.account, key, owner=owner)
            case Sent() | Duplicate() | AlreadyDead() | Retry() | Queued():
                pass  # recorded by `finish_sent`, earlier, or a wait that keeps nothing
            case _:
                assert_never(outcome)

    def _dead_letter(self, job: Job, attempt: Attempt, outcome: DeadLetter) -> None:
        """Keep the job for an operator (under the Celery task id), then settle its claim."""
        key = job.idempotency_key
        self._s.dead_letters.add(
            reason=outcome.reason,
            error_class=outcome.error_class,
            code=outcome.code,
            kwargs=job.kwargs(),
            account=job.account,
            idempotency_key=key,
            history=[*attempt.history, *_entry(outcome.error)],
            task_id=attempt.task_id,
        )
        result = {"status": "dead_lettered", "reason": outcome.reason, "code": outcome.code}
        self._s.idempotency.mark_dead(job.account, key, owner=attempt.owner, result=result)
        woken = self._s.status.mark_dead(job, reason=outcome.reason, code=outcome.code)
        self._woke(job.account, woken)

    def _woke(self, account: str, woken: int) -> None:
        if woken and self.on_wake is not None:
            self.on_wake(account)

    def _resume_after_probe(self, account: str) -> None:
        if self._s.accounts.resume(account):
            woken = self._s.parking.wake(account, {ParkReason.PAUSED})
            log.warning(
                "account %s resumed after a successful probe; %d jobs woken", account, woken
            )


class _NoSlot(Exception):
    """No rate-limit slot within the maximum wait, for a step that takes its slot late."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"no rate-limit slot within the wait; next in {delay_s:.1f}s")
        self.delay_s = delay_s


def _not_now(started: Started) -> Retry:
    """`begin` took nothing and the step must wait: claim held elsewhere, or (deferring) its
    journey token being created."""
    if started.state is Begin.BUSY:
        delay = min(max(started.delay_s, BUSY_MIN_DELAY_S), BUSY_MAX_DELAY_S)
        return _wait(delay, ErrorClass.BUSY, "another worker holds this job's claim")
    return _wait(TOKEN_WAIT_DELAY_S, ErrorClass.TOKEN_WAIT, "the journey token is being created")


def _wait(delay_s: float, kind: ErrorClass, reason: str) -> Retry:
    """A retry that is a wait (claim held elsewhere, rate limit), not a failure."""
    return Retry(
        delay_s=delay_s, reason=reason, error={"class": kind, "code": None, "message": reason}
    )


def _entry(error: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The attempt history's entry for an outcome's error, if it has one."""
    return [error] if error else []


def _count(account: str, outcome: Outcome) -> None:
    """One metric per outcome."""
    match outcome:
        case Sent():
            metrics.MESSAGES_SENT.labels(account).inc()
        case Retry():
            metrics.RETRIES.labels(account, outcome.error_class.value).inc()
        case Queued():
            metrics.QUEUED.labels(account, outcome.why).inc()
        case Park():
            metrics.PARKED.labels(account, outcome.reason.value).inc()
        case DeadLetter():
            metrics.DEAD_LETTERS.labels(account, outcome.error_class.value).inc()
        case Duplicate() | AlreadyDead():
            pass  # counted where they are found (`DUPLICATES`), or not at all
        case _:
            assert_never(outcome)
