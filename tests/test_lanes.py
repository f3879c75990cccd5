"""Lanes (worker/state/lanes.py, begin_step.lua, lane_release.lua, worker/ops/feeder.py): a step
that must wait for its account leaves the shared queue for the account's lane, realtime before
bulk, and a feeder releases it with its rate-limit slot taken. Real Redis, real sandbox."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import settings_from
from worker.job import Job, Lane, parse_job
from worker.ops.feeder import LaneFeeder
from worker.pipeline.outcomes import Queued, Sent
from worker.pipeline.sender import Attempt
from worker.pipeline.step_meta import META_FIELD, StepMeta
from worker.producer import Producer
from worker.runtime import Runtime, build_runtime
from worker.settings import AccountSettings
from worker.state.lanes import LaneEntry, ReleaseLimits
from worker.state.ratelimit import RateParams
from worker.state.step_gate import Begin, ReleasedSlot, StepKeys
from worker.tokens.journey import TokenRef
from zns_dev.sandbox.control import SandboxControl


def _job(lane: Lane | None = None, journey: str | None = None) -> Job:
    raw: dict[str, Any] = {"phone": "84987654321", "template_id": "500", "template_data": {"a": 1}}
    if lane is not None:
        raw["lane"] = lane.value
    raw["journey"] = journey or uuid.uuid4().hex
    return parse_job(raw, default_key=uuid.uuid4().hex)


def _entry(job: Job, task_id: str | None = None) -> LaneEntry:
    return LaneEntry(task_id or job.idempotency_key, job.account, job.priority, job.kwargs())


def _keys(rt: Runtime, job: Job) -> StepKeys:
    ref = TokenRef(job.account, job.phone, job.journey, "1")
    return StepKeys(job.account, job.idempotency_key, job.template_id, rt.journey_tokens.key(ref))


RuntimeWith = Callable[[dict[str, str]], Runtime]


@pytest.fixture
def runtime_with(worker_env: dict[str, str]) -> Iterator[RuntimeWith]:
    """Runtimes on the test's Redis with these settings over the worker's; closed after."""
    built: list[Runtime] = []

    def build(env: dict[str, str]) -> Runtime:
        built.append(build_runtime(settings_from({**worker_env, **env})))
        return built[-1]

    yield build
    for rt in built:
        rt.close()


@pytest.fixture
def lanes_rt(runtime_with: RuntimeWith) -> Runtime:
    """An account limited to 10 sends/s (9.5 with the headroom), in-flight cap 2."""
    env = {"ZNS_RATE_PER_S": "10", "ZNS_MAX_IN_FLIGHT": "2", "ZNS_PIPELINE__RATE_MAX_WAIT_S": "0"}
    rt = runtime_with(env)
    rt.sender.probe_quota("default", first=True)
    return rt


def _limits(rt: Runtime, limit: int = 100) -> ReleaseLimits:
    account = rt.settings.account("default")
    assert account is not None
    return ReleaseLimits(RateParams.of(account), 1000, account.max_in_flight, limit)


# --- the lane check in begin --------------------------------------------------------------------


def test_a_step_waits_behind_its_accounts_lane_and_realtime_overtakes_bulk(
    lanes_rt: Runtime,
) -> None:
    gate = lanes_rt.sender._gate
    lanes_rt.lanes.push([_entry(_job(Lane.BULK))])
    # a bulk step keeps its place behind the bulk lane; a realtime step does not wait for it
    bulk = _job(Lane.BULK)
    assert gate.begin(_keys(lanes_rt, bulk), owner="o1", probe=False, lane=Lane.BULK).why == "lane"
    assert gate.begin(_keys(lanes_rt, _job()), owner="o2", probe=False).state is Begin.OK
    # with a realtime step waiting, every step of the account waits
    lanes_rt.lanes.push([_entry(_job(Lane.REALTIME))])
    started = gate.begin(_keys(lanes_rt, _job()), owner="o3", probe=False)
    assert (started.state, started.why) == (Begin.QUEUED, "lane")
    # and the claim is given back: the step may begin again when released
    assert lanes_rt.idempotency.state("default", bulk.idempotency_key) is None


def test_the_in_flight_cap_sends_the_next_step_to_its_lane_until_one_ends(
    lanes_rt: Runtime,
) -> None:
    gate = lanes_rt.sender._gate
    first, second, third = _job(), _job(), _job()
    assert gate.begin(_keys(lanes_rt, first), owner="o1", probe=False).state is Begin.OK
    assert gate.begin(_keys(lanes_rt, second), owner="o2", probe=False).state is Begin.OK
    assert gate.begin(_keys(lanes_rt, third), owner="o3", probe=False).why == "cap"
    assert lanes_rt.lanes.in_flight("default") == 2
    lanes_rt.idempotency.release("default", first.idempotency_key, owner="o1")  # one ends
    assert gate.begin(_keys(lanes_rt, third), owner="o3", probe=False).state is Begin.OK


def test_the_other_account_is_not_held_by_this_one(
    worker_env: dict[str, str], lanes_rt: Runtime
) -> None:
    settings = settings_from({**worker_env, "ZNS_MAX_IN_FLIGHT": "1"})
    rt = build_runtime(settings.model_copy(update={"accounts": {"b": AccountSettings()}}))
    try:
        rt.lanes.push([_entry(_job(Lane.REALTIME))])  # account default has a backlog
        other = parse_job(
            {"phone": "84987654321", "template_id": "1", "template_data": {"a": 1}, "account": "b"},
            default_key=uuid.uuid4().hex,
        )
        rt.quota.init("b", 100, 100)
        assert rt.sender._gate.begin(_keys(rt, other), owner="o", probe=False).state is Begin.OK
    finally:
        rt.close()


# --- release --------------------------------------------------------------------------------------


def test_release_takes_realtime_first_in_order_with_spaced_slots(lanes_rt: Runtime) -> None:
    bulk = [_job(Lane.BULK) for _ in range(3)]
    realtime = [_job(Lane.REALTIME) for _ in range(2)]
    lanes_rt.lanes.push([_entry(job) for job in bulk])
    lanes_rt.lanes.push([_entry(job) for job in realtime])
    release = lanes_rt.lanes.release("default", _limits(lanes_rt, limit=4))
    order = [item.entry.task_id for item in release.taken]
    # the in-flight cap (2) bounds the release: the two realtime steps, in their order
    assert order == [job.idempotency_key for job in realtime]
    slots = [item.slot_at_ms for item in release.taken]
    assert slots[1] - slots[0] >= 100  # one interval of 10/s (plus the headroom) apart
    assert (release.realtime_left, release.bulk_left) == (0, 3)
    # nothing more until the two released steps begin and end (they count in flight)
    assert lanes_rt.lanes.release("default", _limits(lanes_rt)).taken == []


def test_release_stops_at_the_rate_horizon(runtime_with: RuntimeWith) -> None:
    env = {"ZNS_RATE_PER_S": "5", "ZNS_MAX_IN_FLIGHT": "0"}
    rt = runtime_with(env)
    rt.lanes.push([_entry(_job(Lane.BULK)) for _ in range(20)])
    release = rt.lanes.release("default", _limits(rt))
    # 1 s of slots at 4.75/s: the slot now and those within the horizon
    assert 4 <= len(release.taken) <= 6
    assert release.bulk_left == 20 - len(release.taken)


def test_a_lease_that_runs_out_puts_the_entry_back_at_the_head(runtime_with: RuntimeWith) -> None:
    env = {"ZNS_MAX_IN_FLIGHT": "0", "ZNS_PIPELINE__LANE_LEASE_S": "1"}
    rt = runtime_with(env)
    jobs = [_job(Lane.BULK) for _ in range(3)]
    rt.lanes.push([_entry(job) for job in jobs])
    taken = rt.lanes.release("default", _limits(rt, limit=1)).taken  # then the feeder dies
    assert [t.entry.task_id for t in taken] == [jobs[0].idempotency_key]
    time.sleep(1.1)
    again = rt.lanes.release("default", _limits(rt, limit=3)).taken
    assert [t.entry.task_id for t in again] == [job.idempotency_key for job in jobs]


def test_leases_that_run_out_put_their_entries_back_in_their_order(
    runtime_with: RuntimeWith,
) -> None:
    env = {"ZNS_MAX_IN_FLIGHT": "0", "ZNS_PIPELINE__LANE_LEASE_S": "1"}
    rt = runtime_with(env)
    jobs = [_job(Lane.BULK) for _ in range(5)]
    rt.lanes.push([_entry(job) for job in jobs])
    assert len(rt.lanes.release("default", _limits(rt, limit=5)).taken) == 5  # feeder dies
    time.sleep(1.1)
    again = rt.lanes.release("default", _limits(rt, limit=5)).taken
    assert [t.entry.task_id for t in again] == [job.idempotency_key for job in jobs]


# --- a released step ------------------------------------------------------------------------------


def test_a_released_step_sends_in_its_slot_without_taking_another(
    lanes_rt: Runtime, control: SandboxControl
) -> None:
    job = _job(Lane.BULK)
    lanes_rt.lanes.push([_entry(_job(Lane.BULK)), _entry(job)])  # one more waits behind it
    lanes_rt.lanes.release("default", _limits(lanes_rt, limit=1))  # the first, released
    taken = lanes_rt.lanes.release("default", _limits(lanes_rt, limit=1)).taken
    assert [t.entry.task_id for t in taken] == [job.idempotency_key]
    tat = lanes_rt.redis.get(lanes_rt.keys.rate("default"))
    attempt = Attempt(
        task_id=job.idempotency_key, released=ReleasedSlot(taken[0].slot_at_ms, job.idempotency_key)
    )
    assert isinstance(lanes_rt.sender.process(job, attempt), Sent)
    assert lanes_rt.redis.get(lanes_rt.keys.rate("default")) == tat  # no second slot taken
    assert time.time() * 1000 >= taken[0].slot_at_ms  # not before its slot


def test_a_released_step_refused_again_goes_back_to_the_head(lanes_rt: Runtime) -> None:
    job = _job(Lane.BULK)
    lanes_rt.limiter.slot("default")  # the next slot is taken, ~105 ms away
    late = ReleasedSlot(int(time.time() * 1000) - 5_000, job.idempotency_key)  # long past
    outcome = lanes_rt.sender.process(job, Attempt(task_id=job.idempotency_key, released=late))
    assert outcome == Queued("rate", front=True)


def test_the_feeder_publishes_with_a_sealed_slot_that_a_producer_cannot_forge(
    lanes_rt: Runtime,
) -> None:
    published: list[tuple[LaneEntry, dict[str, Any]]] = []
    job = _job(Lane.BULK)
    lanes_rt.lanes.push([_entry(job, "task-1")])
    assert LaneFeeder(lanes_rt, published.extend).feed("default") == 1
    entry, kwargs = published[0]
    assert entry.task_id == "task-1"
    raw_meta = kwargs.pop(META_FIELD)
    assert lanes_rt.meta_seal.open(raw_meta, kwargs).slot == raw_meta["slot"] > 0
    # the same `slot` written by a producer is not sealed: the step is an ordinary first attempt
    forged = {"history": [], "probe": False, "slot": 1}
    assert lanes_rt.meta_seal.open(forged, kwargs) == StepMeta()
    # the lease ended with the publish: nothing comes back
    assert lanes_rt.redis.zcard(lanes_rt.keys.lane_leases("default")) == 0


def test_the_producer_puts_a_bulk_run_in_the_lane_and_records_it_enqueued(
    lanes_rt: Runtime,
) -> None:
    producer = Producer(lanes_rt.settings)
    try:
        jobs = [{**_job().kwargs(), "idempotency_key": f"bulk-{i}"} for i in range(5)]
        for job in jobs:
            job.pop("lane", None)
        report = producer.enqueue_many(jobs)
        assert lanes_rt.lanes.depth("default") == (0, 5)
        status = producer.status("bulk-0")
        assert status is not None and status.state == "enqueued"
        assert len(report.task_ids) == 5
    finally:
        producer.close()


def test_the_feeder_publishes_each_step_alone_with_its_callbacks(
    runtime_with: RuntimeWith,
) -> None:
    published: list[tuple[LaneEntry, dict[str, Any]]] = []
    link = [{"task": "billing.sent", "args": [], "kwargs": {}, "options": {}}]
    rt = runtime_with({"ZNS_MAX_IN_FLIGHT": "0"})  # no limits
    entries = [_entry(_job(Lane.BULK)) for _ in range(3)]
    linked = LaneEntry("linked", "default", Lane.BULK, _job().kwargs(), link=link)
    rt.lanes.push([*entries, linked])
    LaneFeeder(rt, published.extend).feed("default")
    assert [e.task_id for e, _ in published] == [*(e.task_id for e in entries), "linked"]
    assert published[3][0].link == link


# --- what a review found: nothing may leak, expire or die ---------------------------------------


def test_the_feeder_survives_an_unreachable_redis(runtime_with: RuntimeWith) -> None:
    rt = runtime_with({"ZNS_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert LaneFeeder(rt, lambda _items: None).run_once() == 0  # logged, never raised


def test_a_released_duplicate_leaves_the_in_flight_count_at_once(
    lanes_rt: Runtime, control: SandboxControl
) -> None:
    job = _job(Lane.BULK)
    for _ in range(2):  # the same step enqueued twice (a producer's retry)
        lanes_rt.lanes.push([_entry(job)])
        (item,) = lanes_rt.lanes.release("default", _limits(lanes_rt, limit=1)).taken
        released = ReleasedSlot(item.slot_at_ms, item.entry.task_id)
        lanes_rt.sender.process(job, Attempt(task_id=item.entry.task_id, released=released))
    # the second was answered from the idempotency record, and holds no place in the cap
    assert control.stats().sends_accepted == 1
    assert lanes_rt.lanes.in_flight("default") == 0


def test_leases_never_expire_and_release_never_shortens_the_in_flight_set(
    lanes_rt: Runtime,
) -> None:
    gate = lanes_rt.sender._gate
    assert gate.begin(_keys(lanes_rt, _job()), owner="o1", probe=False).state is Begin.OK
    ttl_after_begin = lanes_rt.redis.pttl(lanes_rt.keys.inflight("default"))
    lanes_rt.lanes.push([_entry(_job(Lane.BULK))])
    assert len(lanes_rt.lanes.release("default", _limits(lanes_rt)).taken) == 1
    assert lanes_rt.redis.pttl(lanes_rt.keys.lane_leases("default")) == -1
    assert lanes_rt.redis.pttl(lanes_rt.keys.inflight("default")) >= ttl_after_begin - 1000


def test_a_released_slot_that_passed_while_the_token_was_made_is_taken_anew(
    lanes_rt: Runtime, control: SandboxControl
) -> None:
    job = _job(Lane.BULK)
    lanes_rt.lanes.push([_entry(job)])
    (item,) = lanes_rt.lanes.release("default", _limits(lanes_rt, limit=1)).taken
    tat_before = int(lanes_rt.redis.get(lanes_rt.keys.rate("default")) or 0)
    control.set_faults(latency_ms=300)  # the get-token call outlasts the slot
    released = ReleasedSlot(item.slot_at_ms, item.entry.task_id)
    outcome = lanes_rt.sender.process(job, Attempt(task_id=job.idempotency_key, released=released))
    control.set_faults(latency_ms=0)
    assert isinstance(outcome, Sent)
    # a fresh slot was taken for the send (the feeder's had passed by more than 20 ms)
    assert int(lanes_rt.redis.get(lanes_rt.keys.rate("default")) or 0) > tat_before


def test_an_unknown_accounts_lane_is_released_to_be_dead_lettered(lanes_rt: Runtime) -> None:
    ghost = LaneEntry("ghost-1", "ghost", Lane.BULK, {**_job().kwargs(), "account": "ghost"})
    lanes_rt.lanes.push([ghost])
    published: list[tuple[LaneEntry, dict[str, Any]]] = []
    assert LaneFeeder(lanes_rt, published.extend).run_once() == 1
    assert published[0][0].task_id == "ghost-1"  # the task dead-letters it: unknown account


def test_a_canary_keeps_its_probe_flag_through_its_lane(lanes_rt: Runtime) -> None:
    job = _job()
    entry = LaneEntry("canary", "default", Lane.REALTIME, job.kwargs(), probe=True)
    lanes_rt.lanes.push([entry])
    published: list[tuple[LaneEntry, dict[str, Any]]] = []
    LaneFeeder(lanes_rt, published.extend).feed("default")
    kwargs = dict(published[0][1])
    meta = lanes_rt.meta_seal.open(kwargs.pop(META_FIELD), kwargs)
    assert meta.probe is True


def test_the_cap_refuses_arrivals_only_while_zalo_is_slow_or_not_known_fast(
    runtime_with: RuntimeWith,
) -> None:
    rt = runtime_with({"ZNS_MAX_IN_FLIGHT": "2"})  # no rate limit
    rt.sender.probe_quota("default", first=True)
    gate = rt.sender._gate
    for owner in ("o1", "o2"):  # the cap (2) is full
        assert gate.begin(_keys(rt, _job()), owner=owner, probe=False).state is Begin.OK
    # no answer for the account has come back yet: its arrivals wait in its lane
    assert rt.sender.process(_job(), Attempt(task_id="unknown")) == Queued("cap")
    # a fast account's step is counted, not refused
    rt.sender.answer_times.record("default", 0.1)
    assert isinstance(rt.sender.process(_job(), Attempt(task_id="fast")), Sent)
    # nor when its answers are slow only by the interpreter's wait (a busy process)
    for _ in range(10):
        rt.sender.answer_times.record_lag(0.5)
        rt.sender.answer_times.record("default", 2.0)
    assert isinstance(rt.sender.process(_job(), Attempt(task_id="busy")), Sent)
    # but while Zalo itself answers it in seconds, its arrivals wait in its lane
    for _ in range(10):
        rt.sender.answer_times.record_lag(0.0)
        rt.sender.answer_times.record("default", 2.0)
    assert rt.sender.process(_job(), Attempt(task_id="slow")) == Queued("cap")


def test_a_fast_account_is_released_up_to_max_released_not_begun(
    runtime_with: RuntimeWith,
) -> None:
    rt = runtime_with({"ZNS_MAX_IN_FLIGHT": "2"})
    rt.lanes.push([_entry(_job(Lane.BULK)) for _ in range(10)])
    fast = ReleaseLimits(RateParams(0, 0), 1000, 2, 200, max_released=5, enforce_cap=False)
    # Zalo is fast for it: its cap does not bound the release, the released-not-begun does
    assert len(rt.lanes.release("default", fast).taken) == 5
    assert rt.lanes.release("default", fast).taken == []
    # and a released step that leaves (here: parked before it began) makes room for one more
    first = str(rt.redis.zrange(rt.keys.lane_released("default"), 0, 0)[0])
    rt.lanes.leave_in_flight("default", first.removeprefix("r:"))
    assert len(rt.lanes.release("default", fast).taken) == 1


def test_a_failed_publish_gives_the_steps_back_at_once(runtime_with: RuntimeWith) -> None:
    # Given steps in a lane and a broker that refuses the feeder's publish (it is restarting);
    # leases of 30 s, the shipped default
    rt = runtime_with({"ZNS_MAX_IN_FLIGHT": "0"})
    published: list[tuple[LaneEntry, dict[str, Any]]] = []

    def down(_items: object) -> None:
        raise OSError("broker unreachable")

    jobs = [_job(Lane.BULK) for _ in range(3)]
    rt.lanes.push([_entry(job) for job in jobs])
    with pytest.raises(OSError):
        LaneFeeder(rt, down).feed("default")
    # When the broker is back, the next pass
    LaneFeeder(rt, published.extend).feed("default")
    # Then it publishes them at once, in their order, not after their leases ran out
    assert [e.task_id for e, _ in published] == [job.idempotency_key for job in jobs]
    assert rt.lanes.release("default", _limits(rt, limit=3)).leased == 0


def test_a_released_step_probing_the_quota_still_counts_in_flight(
    runtime_with: RuntimeWith,
) -> None:
    # Given an account whose quota nobody has probed yet (a worker just started), cap 2
    rt = runtime_with({"ZNS_MAX_IN_FLIGHT": "2"})
    job = _job(Lane.BULK)
    rt.lanes.push([_entry(job)])
    (item,) = rt.lanes.release("default", _limits(rt, limit=1)).taken
    released = ReleasedSlot(item.slot_at_ms, item.entry.task_id)
    gate = rt.sender._gate
    # When the released step begins and is told to probe the quota first
    started = gate.begin(_keys(rt, job), owner="o1", probe=False, released=released)
    assert started.state is Begin.UNKNOWN
    # Then it still counts in flight while it probes (as slow as Zalo is): the feeder does
    # not release another in its place
    assert rt.lanes.in_flight("default") == 1
    rt.sender.probe_quota("default", first=True)
    assert gate.begin(_keys(rt, job), owner="o1", probe=False, released=released).state is (
        Begin.OK
    )
    assert rt.lanes.in_flight("default") == 1  # now as its claim's owner
