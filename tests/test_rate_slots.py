"""When a step takes its global rate-limit slot: in `begin_step.lua` when its journey token is
stored, else just before the send, after the get-token call (real Redis, sandbox over HTTP)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import settings_from
from worker.job import Job, parse_job
from worker.journey_tokens import TokenRef
from worker.outcomes import Retry, Sent
from worker.runtime import Runtime, build_runtime
from worker.sandbox.control import SandboxControl
from worker.sender import Attempt
from worker.step_gate import Begin, StepKeys


def _job(journey: str) -> Job:
    raw = {"phone": "84987654321", "template_id": "500", "template_data": {"a": 1}}
    return parse_job({**raw, "journey": journey}, default_key=uuid.uuid4().hex)


def _attempt() -> Attempt:
    return Attempt(task_id=uuid.uuid4().hex)


@pytest.fixture
def limited(worker_env: dict[str, str]) -> Iterator[Runtime]:
    """A runtime whose account may send 1 message per second and never waits for a slot."""
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
    tat_ms = int(limited.redis.get(limited.keys.rate("default")) or 0)
    now_ms = time.time() * 1000
    assert now_ms < tat_ms <= now_ms + 1000  # the next slot is within the coming second


def test_a_refused_late_slot_gives_the_claim_and_the_unit_back(
    limited: Runtime, control: SandboxControl
) -> None:
    assert isinstance(limited.sender.process(_job("j1"), _attempt()), Sent)
    units_before = limited.quota.view("default").remaining
    job = _job("j2")  # a second new journey within the same second: no slot without waiting
    outcome = limited.sender.process(job, _attempt())
    assert isinstance(outcome, Retry)
    assert outcome.error["class"] == "throttled"
    assert 0 < outcome.delay_s <= 1
    assert control.stats().calls["send"] == 1  # its token was made, nothing was sent
    assert limited.idempotency.state("default", job.idempotency_key) is None  # claim released
    assert limited.quota.view("default").remaining == units_before  # unit given back
    time.sleep(outcome.delay_s + 0.05)
    assert isinstance(limited.sender.process(job, _attempt()), Sent)
    assert control.stats().calls["get-token"] == 2  # the token made the first time was kept
