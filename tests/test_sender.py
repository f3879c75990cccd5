"""JourneySender against the real sandbox over HTTP and a real Redis, without Celery.

Each test drives one step through `process` and checks the Outcome, what Redis recorded and
what the sandbox received.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis

from worker.clock import next_quota_reset, night_hours_resume_at
from worker.job import Job, parse_job
from worker.pipeline.outcomes import DeadLetter, Duplicate, Park, Retry, Sent
from worker.pipeline.policy import NIGHT_DAYTIME_RETRY_S
from worker.pipeline.sender import Attempt
from worker.runtime import Runtime
from worker.state.step_gate import Begin, Finished, StepKeys
from worker.status import ParkReason
from worker.tokens.access import ACCESS_ROUNDS
from zns_dev.sandbox.control import SandboxControl

PHONE = "84987654321"


def make_job(**extra: object) -> Job:
    raw = {"phone": PHONE, "template_id": "500", "template_data": {"a": 1}, "journey": "j1"}
    return parse_job({**raw, **extra}, default_key=uuid.uuid4().hex)


def attempt(retries: int = 0, probe: bool = False) -> Attempt:
    return Attempt(task_id=uuid.uuid4().hex, retries=retries, probe=probe)


def test_sent_then_duplicate(runtime: Runtime, control: SandboxControl) -> None:
    job = make_job()
    first = runtime.sender.process(job, attempt())
    assert isinstance(first, Sent)
    again = runtime.sender.process(job, attempt())
    assert isinstance(again, Duplicate)
    assert again.result["msg_id"] == first.result["msg_id"]
    assert control.stats().calls["send"] == 1


def test_quota_is_learned_from_a_free_probe_then_tracked(
    runtime: Runtime, control: SandboxControl
) -> None:
    control.set_quota(10, remaining=3)
    for i in range(3):
        assert isinstance(runtime.sender.process(make_job(journey=f"q{i}"), attempt()), Sent)
    assert control.stats().calls["quota"] == 1
    outcome = runtime.sender.process(make_job(journey="q3"), attempt())
    assert isinstance(outcome, Park) and outcome.reason is ParkReason.QUOTA
    assert control.stats().calls["send"] == 3
    assert runtime.parking.count("default") == 1


def test_night_hours_park_until_morning(runtime: Runtime, control: SandboxControl) -> None:
    control.script(-133, endpoint="send")
    before = time.time()
    outcome = runtime.sender.process(make_job(), attempt())
    assert isinstance(outcome, Park) and outcome.reason is ParkReason.NIGHT
    assert outcome.due_at is not None
    # 06:00 Vietnam time, or (when our clock already says day) a short wait: clocks differ
    expected = night_hours_resume_at(before, daytime_retry_s=NIGHT_DAYTIME_RETRY_S)
    assert abs(outcome.due_at - expected) < 5
    (parked,) = runtime.parking.entries("default")
    assert parked.kwargs["phone"] == PHONE
    assert parked.meta["history"][-1]["code"] == -133


def test_template_daily_limit_blocks_only_that_template(
    runtime: Runtime, control: SandboxControl
) -> None:
    control.script(-147, endpoint="send", template_id="500")
    blocked = runtime.sender.process(make_job(), attempt())
    assert isinstance(blocked, Park) and blocked.reason is ParkReason.TEMPLATE_QUOTA
    assert blocked.due_at is not None and blocked.due_at > next_quota_reset(blocked.due_at) - 86_401
    again = runtime.sender.process(make_job(journey="other"), attempt())
    assert isinstance(again, Park) and again.reason is ParkReason.TEMPLATE_QUOTA
    assert control.stats().calls["send"] == 1  # the second never reached Zalo
    other = runtime.sender.process(make_job(template_id="501"), attempt())
    assert isinstance(other, Sent)


def test_daily_quota_error_exhausts_the_counter(runtime: Runtime, control: SandboxControl) -> None:
    control.script(-144, endpoint="send")
    outcome = runtime.sender.process(make_job(), attempt())
    assert isinstance(outcome, Park) and outcome.reason is ParkReason.QUOTA
    assert runtime.quota.view("default").remaining == 0


def test_transient_errors_retry_with_backoff_then_dead_letter(
    runtime: Runtime, control: SandboxControl
) -> None:
    control.script(-100, endpoint="send", times=100)
    cap = runtime.settings.pipeline.max_transient_retries
    first = runtime.sender.process(make_job(), attempt(0))
    assert isinstance(first, Retry)
    assert 0 < first.delay_s <= runtime.settings.pipeline.retry_max_delay_s
    job = make_job()
    last = runtime.sender.process(job, attempt(cap))
    assert isinstance(last, DeadLetter) and last.code == -100
    (entry,) = runtime.dead_letters.entries()
    assert entry.idempotency_key == job.idempotency_key
    assert runtime.idempotency.state("default", job.idempotency_key) == "dead"


def test_http_429_retries_no_sooner_than_retry_after(
    runtime: Runtime, control: SandboxControl
) -> None:
    control.set_faults(fault_429=1.0)
    outcome = runtime.sender.process(make_job(), attempt())
    assert isinstance(outcome, Retry)
    assert outcome.error["class"] == "rate_limited"


@pytest.mark.parametrize("fault", ["fault_5xx", "fault_drop", "fault_100"])
def test_faults_are_retried(runtime: Runtime, control: SandboxControl, fault: str) -> None:
    control.set_faults(**{fault: 1.0})
    outcome = runtime.sender.process(make_job(), attempt())
    assert isinstance(outcome, Retry)
    assert outcome.error["class"] == "transient"


def test_unknown_code_is_retried_a_few_times_then_dead_lettered_with_the_raw_code(
    runtime: Runtime, control: SandboxControl
) -> None:
    control.script(-9999, endpoint="send", times=10)
    assert isinstance(runtime.sender.process(make_job(), attempt(0)), Retry)
    cap = runtime.settings.pipeline.max_unknown_retries
    last = runtime.sender.process(make_job(), attempt(cap))
    assert isinstance(last, DeadLetter)
    assert last.code == -9999 and last.error_class == "unknown"


def test_expired_access_token_is_refreshed_once_and_the_send_goes_out(
    runtime: Runtime, control: SandboxControl
) -> None:
    control.expire_access_tokens()
    outcome = runtime.sender.process(make_job(), attempt())
    assert isinstance(outcome, Sent)
    stats = control.stats()
    assert stats.refresh_successes == 1 and stats.refresh_token_reuses == 0
    assert isinstance(runtime.sender.process(make_job(journey="j2"), attempt()), Sent)
    assert control.stats().refresh_attempts == 1


def test_access_tokens_rejected_right_after_each_refresh_pause_the_account(
    runtime: Runtime, control: SandboxControl
) -> None:
    # Given Zalo rejects every access token, even fresh ones (an app or OA problem)
    control.script(-124, endpoint="get-token", times=ACCESS_ROUNDS)
    outcome = runtime.sender.process(make_job(), attempt())
    # Then after a bounded number of refreshes the account is paused, the job parked
    assert isinstance(outcome, Park) and outcome.reason is ParkReason.PAUSED
    pause = runtime.accounts.status("default")
    assert pause is not None and f"rejected {ACCESS_ROUNDS} times" in pause.reason
    assert control.stats().refresh_successes == ACCESS_ROUNDS - 1
    assert runtime.dead_letters.count() == 0


def test_a_fresh_token_that_died_again_is_refreshed_again_not_a_pause(
    runtime: Runtime, control: SandboxControl
) -> None:
    # Given the first two tokens are rejected (the second died while this step waited)
    control.script(-124, endpoint="get-token", times=ACCESS_ROUNDS - 1)
    outcome = runtime.sender.process(make_job(), attempt())
    assert isinstance(outcome, Sent)
    assert runtime.accounts.status("default") is None


def test_dead_refresh_token_pauses_the_account_without_dead_letters(
    runtime: Runtime, control: SandboxControl
) -> None:
    runtime.redis.hset(
        runtime.keys.oauth("default"), mapping={"access_token": "stale", "refresh_token": "spent"}
    )
    outcome = runtime.sender.process(make_job(), attempt())
    assert isinstance(outcome, Park) and outcome.reason is ParkReason.PAUSED
    assert runtime.accounts.status("default") is not None
    assert runtime.dead_letters.count() == 0


def test_paused_account_parks_and_a_successful_probe_resumes_it(
    runtime: Runtime, control: SandboxControl
) -> None:
    runtime.accounts.pause("default", reason="operator")
    parked = runtime.sender.process(make_job(journey="p1"), attempt())
    assert isinstance(parked, Park) and parked.reason is ParkReason.PAUSED
    assert control.stats().calls.get("send", 0) == 0
    probe = runtime.sender.process(make_job(journey="p2"), attempt(probe=True))
    assert isinstance(probe, Sent)
    assert runtime.accounts.status("default") is None
    (woken,) = runtime.parking.lease_due("default", 10)
    assert woken.kwargs["journey"] == "p1"


def test_a_live_claim_is_not_stolen(runtime: Runtime, control: SandboxControl) -> None:
    job = make_job()
    # another execution holds the claim (taken by `begin`, which keeps it once the quota is known)
    runtime.quota.set("default", 10, 10)
    step = StepKeys(job.account, job.idempotency_key, job.template_id, "unused-jt-key")
    held = runtime.sender._gate.begin(step, owner="someone-alive", probe=False)
    assert held.state is Begin.OK
    outcome = runtime.sender.process(job, attempt())
    assert isinstance(outcome, Retry)
    assert outcome.delay_s <= 5
    assert control.stats().calls.get("send", 0) == 0


def test_journey_token_expiry_is_respected(runtime: Runtime, control: SandboxControl) -> None:
    assert isinstance(runtime.sender.process(make_job(), attempt()), Sent)
    # Seven days later (the sandbox's clock) the stored token is past its life on Zalo's side:
    # ours expires it too, so the next step gets a new token instead of a -150.
    control.advance_clock(7 * 86_400 + 60)
    runtime.redis.hset(
        runtime.keys.journey_token("default", PHONE, "j1", "token_logistics_7"), "expires_at_ms", 1
    )
    assert isinstance(runtime.sender.process(make_job(), attempt()), Sent)
    assert control.stats().journey_tokens_created == 2
    assert control.stats().errors.get(-150, 0) == 0


def _finish_fails(runtime: Runtime, monkeypatch: pytest.MonkeyPatch, times: int) -> list[float]:
    """The state Redis refuses `finish_sent` `times` times (as during a restart); returns the
    pauses the sender took."""
    gate = runtime.sender._gate
    real = gate.finish_sent
    failures = iter(range(times))
    pauses: list[float] = []

    def flaky(*args: Any, **kwargs: Any) -> Finished:
        if next(failures, None) is not None:
            raise redis.ConnectionError("Connection refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(gate, "finish_sent", flaky)
    monkeypatch.setattr(runtime.sender, "_sleep", pauses.append)
    return pauses


def test_a_send_is_recorded_once_redis_is_back_and_never_sent_again(
    runtime: Runtime, control: SandboxControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses = _finish_fails(runtime, monkeypatch, times=3)
    job = make_job()
    first = runtime.sender.process(job, attempt())
    assert isinstance(first, Sent)
    assert pauses == [0.2, 0.5, 1.0]
    again = runtime.sender.process(job, attempt())
    assert isinstance(again, Duplicate) and again.result["msg_id"] == first.result["msg_id"]
    assert control.stats().calls["send"] == 1


def test_a_send_that_cannot_be_recorded_keeps_its_claim(
    runtime: Runtime, control: SandboxControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    _finish_fails(runtime, monkeypatch, times=100)
    job = make_job()
    assert isinstance(runtime.sender.process(job, attempt()), Sent)
    # a redelivery of the same step meanwhile waits for the claim instead of sending again
    again = runtime.sender.process(job, attempt())
    assert isinstance(again, Retry) and again.error["class"] == "busy"
    assert control.stats().calls["send"] == 1


def test_two_runs_of_one_task_never_free_each_others_claim(
    runtime: Runtime, control: SandboxControl
) -> None:
    # Given a step whose task runs twice at once (redelivered after a broker connection loss
    # while the first run goes on), the first run holding the claim
    job = make_job()
    first = Attempt(task_id="task-1")
    runtime.quota.set("default", 10, 10)  # `begin` keeps a claim only once the quota is known
    step = StepKeys(job.account, job.idempotency_key, job.template_id, "unused-jt-key")
    held = runtime.sender._gate.begin(step, owner=first.owner, probe=False)
    assert held.state is Begin.OK
    # When the second run meets the claim, then gives up on the step (a transient failure)
    second = Attempt(task_id="task-1")
    outcome = runtime.sender.process(job, second)
    assert isinstance(outcome, Retry) and outcome.error["class"] == "busy"
    runtime.idempotency.release(job.account, job.idempotency_key, owner=second.owner)
    # Then the first run's claim still holds: a third run waits instead of sending
    third = runtime.sender.process(job, Attempt(task_id="task-1"))
    assert isinstance(third, Retry) and third.error["class"] == "busy"
    assert control.stats().calls.get("send", 0) == 0
    assert runtime.idempotency.state(job.account, job.idempotency_key) == "claimed"
