"""The hot path's Redis side: two round trips per sent message in steady state.

`begin` (one Lua call, `begin_step.lua`): claim the idempotency key, pass the pause / template /
quota gates, keep the step's place behind its account's lanes and in-flight cap
(`worker/state/lanes.py`), take a global rate-limit slot, reserve a quota unit, and read the
access token and the journey token. `finish_sent` (one Lua call, `finish_sent.lua`): settle the
quota unit with the figure Zalo reported, mark the job sent and record its status
(`step_status.py`: msg_id, sent time, journey id, indexes; the waiting higher steps of an
ordered journey are woken). Each piece is a Lua library function (`worker/state/lua/lib/`),
shared with the stores' own scripts where they have one (finish, quota, status).
`begin_step_args` and `finish_sent_args` are the scripts' KEYS and ARGV, in the order their
headers list them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import redis

from worker.clock import Clock, ms, next_quota_reset
from worker.job import Job, Lane
from worker.state.keys import Keys
from worker.state.lanes import released_member
from worker.state.ratelimit import RateLimiter, RateParams, Slot
from worker.state.scripts import register
from worker.state.step_status import step_identity


class ReportedQuota(Protocol):
    """The quota figures Zalo reported with a send (`worker.zalo.models.Quota`)."""

    @property
    def remaining_quota(self) -> int | None:
        """remainingQuota, None when Zalo did not say."""

    @property
    def daily_quota(self) -> int | None:
        """dailyQuota, None when Zalo did not say."""


class Begin(StrEnum):
    """What `begin` found."""

    OK = "ok"  # claimed, slot and unit taken: send (after `delay_s`)
    SENT = "sent"
    DEAD = "dead"
    BUSY = "busy"
    PAUSED = "paused"
    TEMPLATE_BLOCKED = "template_blocked"
    UNKNOWN = "unknown"  # no quota counter yet: probe, then begin again
    EXHAUSTED = "exhausted"
    LIMITED = "limited"  # no rate slot within the allowed wait: wait in the lane
    QUEUED = "queued"  # steps of the account wait ahead in its lanes, or its in-flight cap is full
    TOKEN_BUSY = "token_busy"  # deferring, and another step is creating the journey token


@dataclass(frozen=True, slots=True)
class Started:
    """The answer of `begin`."""

    state: Begin
    delay_s: float = 0.0
    #: False when no rate-limit slot was taken yet (no journey token stored): see `slot`.
    slot_taken: bool = True
    slot_at_s: float = 0.0  # the slot on Redis's clock (0: no limit, or none taken)
    result: dict[str, Any] | None = None
    why: str = ""  # QUEUED: 'lane' (steps wait ahead) or 'cap' (in-flight cap reached)
    access_token: str | None = None  # as stored (maybe sealed); None: not in Redis yet
    generation: int = 0
    journey: dict[str, str] | None = None  # token, journey_id, created_at_ms, expires_at_ms


@dataclass(frozen=True, slots=True)
class Finished:
    """What recording a send found: the journey's waiting steps it woke, and when the producer
    API recorded the step enqueued (ms; None for producers that record nothing)."""

    woken: int
    enqueued_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StepKeys:
    """Which job, which journey token."""

    account: str
    idempotency_key: str
    template_id: str
    journey_token_key: str


class StepGate:
    """`begin` and `finish_sent` for one step."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        limiter: RateLimiter,
        clock: Clock,
        claim_ttl_s: float,
        retention_s: float,
        quota_floor: int,
        max_in_flight: Callable[[str], int] = lambda _account: 0,
    ) -> None:
        self._keys = keys
        self._max_in_flight = max_in_flight
        self._limiter = limiter
        self._clock = clock
        self._claim_ttl_ms = ms(claim_ttl_s)
        self._retention_ms = ms(retention_s)
        self._floor = quota_floor
        self._begin = register(client, "begin_step")
        self._finish = register(client, "finish_sent")
        self._pool = client.connection_pool
        self._local = threading.local()

    def _own_client(self) -> redis.Redis:
        """This thread's client on its own connection of the shared pool, for the two calls every
        step makes: no pool checkout (lock, queue, readiness probe) per call."""
        client: redis.Redis | None = getattr(self._local, "client", None)
        if client is None:
            client = redis.Redis(connection_pool=self._pool, single_connection_client=True)
            self._local.client = client
        return client

    def begin(
        self,
        step: StepKeys,
        *,
        owner: str,
        probe: bool,
        defer_token_wait: bool = False,
        lane: Lane = Lane.REALTIME,
        released: ReleasedSlot | None = None,
        enforce_cap: bool = True,
    ) -> Started:
        """Claim, gates, lane and in-flight checks, rate slot, quota unit and token reads,
        atomically. `defer_token_wait`: answer TOKEN_BUSY, taking nothing, if another step is
        creating the journey token. `released`: the step comes from its lane, with this slot.
        `enforce_cap`: refuse the step when its account's in-flight cap is reached (else it is
        only counted)."""
        keys, args = begin_step_args(
            self._keys,
            step,
            owner=owner,
            claim_ttl_ms=self._claim_ttl_ms,
            floor=self._floor,
            probe=probe,
            rate=self._limiter.params(step.account),
            max_wait_ms=self._limiter.max_wait_ms,
            defer=defer_token_wait,
            lanes=LaneArgs(lane, released, self._max_in_flight(step.account), enforce_cap),
        )
        reply = self._begin(keys=keys, args=args, client=self._own_client())
        return _started([str(part) for part in reply])

    def slot(self, account: str) -> Slot:
        """A rate-limit slot for a step that `begin` gave none (its journey token was missing)."""
        return self._limiter.slot(account)

    def finish_sent(
        self,
        step: StepKeys,
        job: Job,
        *,
        owner: str,
        result: dict[str, Any],
        quota: ReportedQuota | None,
    ) -> Finished:
        """Settle the quota unit (with Zalo's figure), mark the job sent and record its status."""
        keys, args = finish_sent_args(
            self._keys,
            step,
            job,
            now=self._clock(),
            retention_ms=self._retention_ms,
            owner=owner,
            result=result,
            quota=quota,
        )
        reply = self._finish(keys=keys, args=args, client=self._own_client())
        enqueued = str(reply[4]) if len(reply) > 4 else ""  # noqa: PLR2004
        return Finished(woken=int(reply[3]), enqueued_at_ms=int(enqueued) if enqueued else None)


#: How late a released step may still send in the slot its feeder took: a late send narrows the
#: gap to the next slot, and the rate's headroom (5% of a second: ~50 ms) must also absorb the
#: jitter between slot and send, so at most 20 ms of it.
LATE_SLOT_MS = 20


@dataclass(frozen=True, slots=True)
class ReleasedSlot:
    """A step a feeder released from its lane: the slot it took (ms, Redis's clock; 0: none
    needed) and the step's task id (its entry in the account's in-flight count)."""

    slot_ms: int
    task_id: str


@dataclass(frozen=True, slots=True)
class LaneArgs:
    """What begin_step.lua needs to keep a step's place behind its account's lanes."""

    lane: Lane = Lane.REALTIME
    released: ReleasedSlot | None = None
    max_in_flight: int = 0  # counted when > 0
    enforce_cap: bool = False  # and refused at the cap


def begin_step_args(
    keys: Keys,
    step: StepKeys,
    *,
    owner: str,
    claim_ttl_ms: int,
    floor: int,
    probe: bool,
    rate: RateParams,
    max_wait_ms: int,
    defer: bool,
    lanes: LaneArgs = LaneArgs(),
) -> tuple[list[str], list[str | int]]:
    """begin_step.lua's KEYS and ARGV."""
    a = step.account
    released = lanes.released
    return (
        [
            keys.idempotency(a, step.idempotency_key),  # idem_hash
            keys.paused(a),  # paused_hash
            keys.quota(a),  # quota_hash
            keys.template_block(a, step.template_id),  # block_key
            keys.rate(a),  # rate_key
            keys.cooloff(a),  # cooloff_key
            keys.oauth(a),  # oauth_hash
            step.journey_token_key,  # token_hash
            Keys.lock_of(step.journey_token_key),  # token_lock
            keys.lane(a, Lane.REALTIME.value),  # lane_realtime
            keys.lane(a, Lane.BULK.value),  # lane_bulk
            keys.inflight(a),  # inflight
            keys.lane_released(a),  # released
        ],
        [
            owner,
            claim_ttl_ms,
            floor,
            "1" if probe else "0",
            rate.emission_us,
            rate.tolerance_us,
            max_wait_ms,
            "1" if defer else "0",
            lanes.lane.value,
            "" if released is None else released.slot_ms,  # released_slot_ms
            "" if released is None else released_member(released.task_id),
            lanes.max_in_flight,
            LATE_SLOT_MS,
            "1" if lanes.enforce_cap else "0",
        ],
    )


def finish_sent_args(
    keys: Keys,
    step: StepKeys,
    job: Job,
    *,
    now: float,
    retention_ms: int,
    owner: str,
    result: dict[str, Any],
    quota: ReportedQuota | None,
) -> tuple[list[str], list[str | int]]:
    """finish_sent.lua's KEYS and ARGV: the step's identity first, as in every status script."""
    a, now_ms = job.account, ms(now)
    msg_id = str(result.get("msg_id") or "")
    reported = "" if quota is None or quota.remaining_quota is None else quota.remaining_quota
    daily = "" if quota is None or quota.daily_quota is None else quota.daily_quota
    return (
        [
            keys.idempotency(step.account, step.idempotency_key),  # idem_hash
            keys.quota(step.account),  # quota_hash
            keys.status(a, job.idempotency_key),  # status_hash
            keys.status_by_msg(a, msg_id),  # msg_index
            keys.status_by_tracking(a, job.tracking_id),  # tracking_index
            keys.early_delivery(a, msg_id),  # early_hash
            keys.journey_steps(a, job.phone, job.journey),  # journey_steps
            keys.order_pending(a, job.phone, job.journey),  # order_pending
            keys.order_waiters(a, job.phone, job.journey),  # order_waiters
            keys.parked(a),  # parked
            keys.inflight(a),  # inflight
        ],
        [
            *step_identity(job),
            now_ms,
            retention_ms,
            owner,
            json.dumps(result, separators=(",", ":")),  # result_json
            msg_id,
            result.get("sent_time") or now_ms,  # sent_at_ms
            result.get("journey_id") or "",  # journey_id
            reported,
            daily,
            ms(next_quota_reset(now)),  # expire_at_ms
        ],
    )


def _started(reply: list[str]) -> Started:
    state = Begin(reply[0])
    if state in (Begin.SENT, Begin.DEAD):
        payload = reply[1] if len(reply) > 1 else ""
        return Started(state, result=json.loads(payload) if payload else None)
    if state in (Begin.BUSY, Begin.LIMITED):
        return Started(state, delay_s=max(int(reply[1]), 0) / 1000)
    if state is Begin.QUEUED:
        return Started(state, why=reply[1])
    if state is not Begin.OK:
        return Started(state)
    journey = dict(
        zip(("token", "journey_id", "created_at_ms", "expires_at_ms"), reply[5:9], strict=True)
    )
    delay_ms = int(reply[2])
    return Started(
        state,
        delay_s=max(delay_ms, 0) / 1000,
        slot_taken=delay_ms >= 0,
        slot_at_s=int(reply[9]) / 1000,
        access_token=reply[3] or None,
        generation=int(reply[4] or 0),
        journey=journey if journey["token"] else None,
    )
