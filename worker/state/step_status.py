"""Step status, recorded: the life of every journey step, looked up by idempotency key, tracking
id or msg_id.

    enqueued (producer) ─► parked (waiting) ─► sent (finish_sent.lua) ─► delivered (webhook)
                                           └─► dead_lettered (reason)

One hash per step (`Keys.status`), written in the same Lua call as the event it records; a state
only moves forward. `sent` is written by the hot path's `finish_sent.lua` (no extra round trip);
the others here. Secondary indexes (`status_by_msg`, `status_by_tracking`) hold the status key's
name. A delivery whose msg_id is not recorded yet (Zalo's webhook can beat our own write) is kept
(`early_delivery`) and merged when the send is recorded. Everything expires after the idempotency
retention, counted from the step's last event; journey events (charged, timed out) live longer, as
long as the longest journey token.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from enum import StrEnum

import redis

from worker.clock import Clock, ms
from worker.job import Job
from worker.phone import mask_phone
from worker.state.keys import Keys
from worker.state.scripts import ScriptCall, register, run_pipelined
from worker.status import Lookup, StepStatus

#: A delivery reported before its send was recorded waits this long for the record (the send is
#: recorded within the step's time limit; a day covers a worker's outage too).
EARLY_DELIVERY_TTL_S = 86_400
#: Steps per Lua call at enqueue: ~2 ms of Redis time, so the hot path never waits behind a batch.
ENQUEUE_CHUNK = 100
#: Journey events outlive the longest journey token (30 days), so "charged" stays answerable.
JOURNEY_EVENT_RETENTION_S = 31 * 86_400
#: Used when no retention is passed: the default of ZNS_PIPELINE__IDEMPOTENCY_RETENTION_S (the
#: runtime passes the configured value, so a step's status lives as long as its idempotency key).
DEFAULT_RETENTION_S = 7 * 86_400
JOURNEY_EVENTS = {"charged": "charged_at_ms", "timed_out": "timed_out_at_ms"}


class Delivery(StrEnum):
    """What `record_delivery` did."""

    RECORDED = "recorded"  # on the step sent with that msg_id
    EARLY = "early"  # msg_id not recorded yet: kept, merged when the send is recorded
    DUPLICATE = "duplicate"  # already known: nothing changed


class StatusStore:
    """Writes and reads step status; the hot path's own write is in `finish_sent.lua`."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        clock: Clock,
        retention_s: float = DEFAULT_RETENTION_S,
    ) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock
        self._retention_ms = ms(retention_s)
        self._enqueued = register(client, "status_enqueued")
        self._parked = register(client, "status_parked")
        self._dead = register(client, "status_dead")
        self._delivered = register(client, "status_delivered")
        self._reopen = register(client, "status_reopen")

    # -- writes ----------------------------------------------------------------------------------

    def mark_enqueued(self, jobs: Sequence[tuple[str, Job]]) -> None:
        """Record steps about to be published (task id, job): one pipelined round trip, one Lua
        call per `ENQUEUE_CHUNK` steps of an account."""
        if not jobs:
            return
        now_ms = ms(self._clock())
        by_account: dict[str, list[tuple[str, Job]]] = defaultdict(list)
        for task_id, job in jobs:
            by_account[job.account].append((task_id, job))
        calls: list[ScriptCall] = []
        for items in by_account.values():
            for start in range(0, len(items), ENQUEUE_CHUNK):
                chunk = items[start : start + ENQUEUE_CHUNK]
                keys, args = status_enqueued_args(
                    self._keys, chunk, now_ms=now_ms, retention_ms=self._retention_ms
                )
                calls.append((self._enqueued, keys, args))
        run_pipelined(self._client, calls)

    def mark_parked(self, job: Job, *, reason: str, due_at: float | None) -> bool:
        """Record that a step waits in the parking lot; False if it is already further along."""
        keys, args = status_parked_args(
            self._keys,
            job,
            now_ms=ms(self._clock()),
            retention_ms=self._retention_ms,
            reason=reason,
            due_ms=None if due_at is None else ms(due_at),
        )
        return bool(self._parked(keys=keys, args=args))

    def mark_dead(self, job: Job, *, reason: str, code: int | None) -> int:
        """Record a dead letter; returns how many steps waiting for it (ordering) were woken."""
        keys, args = status_dead_args(
            self._keys,
            job,
            now_ms=ms(self._clock()),
            retention_ms=self._retention_ms,
            reason=reason[:300],
            code=code,
        )
        return int(self._dead(keys=keys, args=args))

    def reopen(self, account: str, key: str) -> bool:
        """A replayed dead letter is `enqueued` again; False if the step was not dead-lettered."""
        keys, args = status_reopen_args(self._keys, account, key)
        return bool(self._reopen(keys=keys, args=args))

    def record_delivery(
        self, account: str, msg_id: str, delivered_at_ms: int, tracking_id: str | None
    ) -> Delivery:
        """Record Zalo's delivery report for `msg_id` (idempotent)."""
        keys, args = status_delivered_args(
            self._keys,
            account,
            msg_id,
            delivered_at_ms=delivered_at_ms,
            tracking_id=tracking_id,
            now_ms=ms(self._clock()),
            retention_ms=self._retention_ms,
        )
        return Delivery(str(self._delivered(keys=keys, args=args)))

    def mark_delivered(
        self, account: str, msg_id: str, delivered_at_ms: int, tracking_id: str | None
    ) -> bool:
        """True if the delivery is newly recorded (or kept until its send is recorded)."""
        return self.record_delivery(account, msg_id, delivered_at_ms, tracking_id) in (
            Delivery.RECORDED,
            Delivery.EARLY,
        )

    def mark_journey_event(self, account: str, journey_id: str, event: str, at_ms: int) -> None:
        """Record a journey's `charged` or `timed_out` event (the first report of each wins)."""
        field = JOURNEY_EVENTS.get(event)
        if field is None:
            raise ValueError(f"unknown journey event {event!r} (expected one of {JOURNEY_EVENTS})")
        key = self._keys.journey_events(account, journey_id)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, field, at_ms)
            pipe.pexpire(key, ms(JOURNEY_EVENT_RETENTION_S))
            pipe.execute()

    # -- reads -----------------------------------------------------------------------------------

    def get(
        self, account: str, value: str, by: Lookup = Lookup.IDEMPOTENCY_KEY
    ) -> StepStatus | None:
        """The status of one step, or None if nothing is recorded."""
        if by is Lookup.IDEMPOTENCY_KEY:
            return self._read(self._keys.status(account, value))
        index = (
            self._keys.status_by_msg(account, value)
            if by is Lookup.MSG_ID
            else self._keys.status_by_tracking(account, value)
        )
        name = self._client.get(index)
        if name is None:
            return self._early(account, value) if by is Lookup.MSG_ID else None
        return self._read(str(name))

    def journey(self, account: str, phone: str, journey: str) -> list[StepStatus]:
        """Every recorded step of a journey, by step number, then by when it was enqueued."""
        names: list[str] = self._client.zrange(  # type: ignore[assignment]
            self._keys.journey_steps(account, phone, journey), 0, -1
        )
        steps = self._read_many(names)
        return sorted(steps, key=lambda s: (int(s.get("step") or 0), s.get("enqueued_at_ms") or ""))

    def journey_events(self, account: str, journey_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """charged_at_ms / timed_out_at_ms per Zalo journey id (absent ones left out)."""
        ids = sorted(set(journey_ids))
        with self._client.pipeline(transaction=False) as pipe:
            for journey_id in ids:
                pipe.hgetall(self._keys.journey_events(account, journey_id))
            replies: list[dict[str, str]] = pipe.execute()
        return {
            jid: {k: int(v) for k, v in reply.items()}
            for jid, reply in zip(ids, replies, strict=True)
            if reply
        }

    # -- helpers ---------------------------------------------------------------------------------

    def _read(self, name: str) -> StepStatus | None:
        fields: dict[str, str] = self._client.hgetall(name)  # type: ignore[assignment]
        return StepStatus(fields.get("state", ""), fields) if fields.get("state") else None

    def _read_many(self, names: list[str]) -> list[StepStatus]:
        with self._client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(name)
            replies: list[dict[str, str]] = pipe.execute()
        return [StepStatus(r["state"], r) for r in replies if r.get("state")]

    def _early(self, account: str, msg_id: str) -> StepStatus | None:
        """A delivery kept for a msg_id whose send is not recorded (yet)."""
        fields: dict[str, str] = self._client.hgetall(  # type: ignore[assignment]
            self._keys.early_delivery(account, msg_id)
        )
        if not fields:
            return None
        return StepStatus("delivered_unmatched", {**fields, "msg_id": msg_id})


# -- the scripts' KEYS and ARGV, in the order their headers list them ----------------------------


def status_enqueued_args(
    keys: Keys, steps: Sequence[tuple[str, Job]], *, now_ms: int, retention_ms: int
) -> tuple[list[str], list[str | int]]:
    """status_enqueued.lua's KEYS and ARGV for steps (task id, job) of one account."""
    step_keys = [key for _, job in steps for key in _step_keys(keys, job)]
    per_step = [value for task_id, job in steps for value in (*step_identity(job), task_id)]
    return step_keys, [now_ms, retention_ms, *per_step]


def status_parked_args(
    keys: Keys, job: Job, *, now_ms: int, retention_ms: int, reason: str, due_ms: int | None
) -> tuple[list[str], list[str | int]]:
    """status_parked.lua's KEYS and ARGV (due_ms None: until the account is resumed)."""
    return (
        _step_keys(keys, job)[:3],
        [*step_identity(job), now_ms, retention_ms, reason, "" if due_ms is None else due_ms],
    )


def status_dead_args(
    keys: Keys, job: Job, *, now_ms: int, retention_ms: int, reason: str, code: int | None
) -> tuple[list[str], list[str | int]]:
    """status_dead.lua's KEYS and ARGV (code: Zalo's, None if the dead letter has none)."""
    return (
        [
            *_step_keys(keys, job),
            keys.order_waiters(job.account, job.phone, job.journey),  # order_waiters
            keys.parked(job.account),  # parked
        ],
        [*step_identity(job), now_ms, retention_ms, reason, "" if code is None else code],
    )


def status_delivered_args(
    keys: Keys,
    account: str,
    msg_id: str,
    *,
    delivered_at_ms: int,
    tracking_id: str | None,
    now_ms: int,
    retention_ms: int,
) -> tuple[list[str], list[str | int]]:
    """status_delivered.lua's KEYS and ARGV."""
    return (
        [keys.status_by_msg(account, msg_id), keys.early_delivery(account, msg_id)],
        [delivered_at_ms, tracking_id or "", now_ms, retention_ms, ms(EARLY_DELIVERY_TTL_S)],
    )


def status_reopen_args(keys: Keys, account: str, key: str) -> tuple[list[str], list[str | int]]:
    """status_reopen.lua's KEYS (it takes no ARGV)."""
    return [keys.status(account, key)], []


def _step_keys(keys: Keys, job: Job) -> list[str]:
    """status_hash, tracking_index, journey_steps, order_pending: the first KEYS of the status
    scripts that record a step (status_parked.lua takes the first three)."""
    return [
        keys.status(job.account, job.idempotency_key),
        keys.status_by_tracking(job.account, job.tracking_id),
        keys.journey_steps(job.account, job.phone, job.journey),
        keys.order_pending(job.account, job.phone, job.journey),
    ]


def step_identity(job: Job) -> list[str | int]:
    """The step's identity, in the order every script that records a step takes it (ARGV[1..6];
    each step's first six in status_enqueued.lua) and `identify()` in lib/status.lua: idem_key,
    step ('' if none), tracking_id, journey, phone (masked), template_id."""
    return [
        job.idempotency_key,
        "" if job.step is None else job.step,
        job.tracking_id,
        shown_journey(job),
        mask_phone(job.phone),
        job.template_id,
    ]


def shown_journey(job: Job) -> str:
    """The journey reference as recorded: masked when it is the phone (the default)."""
    return mask_phone(job.journey) if job.journey == job.phone else job.journey
