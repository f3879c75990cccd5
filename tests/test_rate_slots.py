"""When a step takes its global rate-limit slot: in `begin_step.lua` when its journey token is
stored, else just before the send, after the get-token call (real Redis, sandbox over HTTP)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import settings_from
from worker.job import Job, parse_job
from worker.pipeline.outcomes import Queued, Sent
from worker.pipeline.sender import Attempt
from worker.runtime import Runtime, build_runtime
from worker.settings import AccountSettings
from worker.state.ratelimit import RateLimiter, RateParams, Slot
from worker.state.step_gate import Begin, StepKeys
from worker.tokens.journey import TokenRef
from zns_dev.sandbox.control import SandboxControl


def _job(journey: str) -> Job:
    raw = {"phone": "84987654321", "template_id": "500", "template_data": {"a": 1}}
    return parse_job({**raw, "journey": journey}, default_key=uuid.uuid4().hex)


def _attempt() -> Attempt:
    return Attempt(task_id=uuid.uuid4().hex)


@pytest.fixture
def limited(worker_env: dict[str, str]) -> Iterator[Runtime]:
    """A runtime whose account may send 1 message per second (0.95 with the default headroom)
    and never waits for a slot."""
    env = {**worker_env, "ZNS_RATE_PER_S": "1", "ZNS_PIPELINE__RATE_MAX_WAIT_S": "0"}
    rt = build_runtime(settings_from(env))
    yield rt
    rt.close()


def _step_keys(rt: Runtime, job: Job) -> StepKeys:
    ref = TokenRef(job.account, job.phone, job.journey, "1")
    return StepKeys(job.account, job.idempotency_key, job.template_id, rt.journey_tokens.key(ref))


def test_begin_takes_no_slot_without_a_stored_journey_token(limited: Runtime) -> None:
    limited.sender.probe_quota("default", first=True)
    gate = limited.sender._gate  # the step's first Redis call, observed directly
    started = gate.begin(_step_keys(limited, _job("new")), owner="o", probe=False)
    assert started.state is Begin.OK
    assert not started.slot_taken
    assert limited.redis.get(limited.keys.rate("default")) is None  # the limiter was not touched


def test_a_new_journey_sends_after_its_token_call_and_then_holds_the_slot(
    limited: Runtime, control: SandboxControl
) -> None:
    assert isinstance(limited.sender.process(_job("j1"), _attempt()), Sent)
    assert control.stats().calls["get-token"] == 1
    tat_us = int(limited.redis.get(limited.keys.rate("default")) or 0)
    now_us = time.time() * 1e6
    # the next slot: one interval on (1 s at 1/s, plus the 5% headroom)
    assert now_us < tat_us <= now_us + 1.06e6


def test_a_new_journey_is_refused_before_its_token_call_when_no_slot_is_near(
    limited: Runtime, control: SandboxControl
) -> None:
    assert isinstance(limited.sender.process(_job("j1"), _attempt()), Sent)
    outcome = limited.sender.process(_job("j2"), _attempt())  # the next slot is ~1 s away
    assert outcome == Queued("rate")  # it waits in its lane, holding no thread
    assert control.stats().calls["get-token"] == 1  # no token made for a step that must wait


def test_a_refused_late_slot_gives_the_claim_and_the_unit_back(
    limited: Runtime, control: SandboxControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = limited.sender._gate  # the late slot is taken through it
    taken_by_another_pod = gate.slot

    def contended(account: str) -> Slot:
        limited.limiter.slot(account)  # another pod takes the free slot while we made the token
        return taken_by_another_pod(account)

    monkeypatch.setattr(gate, "slot", contended)
    limited.sender.probe_quota("default", first=True)
    units_before = limited.quota.view("default").remaining
    job = _job("j1")
    outcome = limited.sender.process(job, _attempt())
    assert outcome == Queued("rate")  # it waits in its lane for the feeder's slot
    assert control.stats().calls["get-token"] == 1
    assert control.stats().calls.get("send", 0) == 0
    assert limited.idempotency.state("default", job.idempotency_key) is None  # claim released
    assert limited.quota.view("default").remaining == units_before  # unit given back
    monkeypatch.undo()
    time.sleep(1.1)  # the next slot, one interval (1 s plus the headroom) on
    assert isinstance(limited.sender.process(job, _attempt()), Sent)
    assert control.stats().calls["get-token"] == 1  # the token made the first time was kept


@pytest.mark.parametrize(
    ("rate", "headroom", "burst", "emission_us"),
    [(50, 0, 1, 20_000), (300, 0, 1, 3_334), (50, 0.05, 1, 21_053), (10, 0, 3, 100_000)],
)
def test_rate_params_never_round_above_the_rate(
    rate: float, headroom: float, burst: int, emission_us: int
) -> None:
    account = AccountSettings(rate_per_s=rate, rate_headroom=headroom, rate_burst=burst)
    params = RateParams.of(account)
    assert params.emission_us == emission_us
    assert params.tolerance_us == emission_us * (burst - 1)
    assert 1e6 / params.emission_us <= rate * (1 - headroom)


def test_slots_are_spaced_by_the_interval_in_microseconds(limited: Runtime) -> None:
    fast = RateLimiter(
        limited.redis,
        limited.keys,
        accounts=lambda _: AccountSettings(rate_per_s=300, rate_headroom=0),
        max_wait_s=1,
    )
    slots = [fast.slot("micro") for _ in range(30)]
    assert all(s.granted for s in slots)
    span_ms = slots[-1].at_s * 1000 - slots[0].at_s * 1000
    # 29 intervals of 3,334 us: 96.7 ms (with 3 ms intervals it would be 87 ms: 333/s)
    assert 96 <= span_ms <= 98
