"""FaultDice: the per-call plan from the config, without HTTP."""

from __future__ import annotations

import pytest

from zns_dev.sandbox.config import ENDPOINTS, SandboxConfig
from zns_dev.sandbox.faults import NO_FAULT, Fault, FaultDice, FaultPlan


def plans(config: SandboxConfig, endpoint: str = "send", n: int = 200) -> list[FaultPlan]:
    dice = FaultDice(seed=1)
    return [dice.plan(config, endpoint) for _ in range(n)]


def test_no_faults_no_latency_is_the_shared_no_fault_plan() -> None:
    assert set(map(id, plans(SandboxConfig()))) == {id(NO_FAULT)}


@pytest.mark.parametrize(
    ("rate", "fault"),
    [
        ("fault_drop", Fault.DROP),
        ("fault_5xx", Fault.HTTP_5XX),
        ("fault_429", Fault.HTTP_429),
        ("fault_100", Fault.ERROR_100),
    ],
)
def test_rate_one_hits_every_call(rate: str, fault: Fault) -> None:
    dice = FaultDice(seed=1)
    config = SandboxConfig.model_validate({rate: 1.0})
    for endpoint in ENDPOINTS:
        plan = dice.plan(config, endpoint)
        assert plan.before is fault
        assert not plan.drop_after


def test_5xx_is_502_or_503() -> None:
    dice = FaultDice(seed=3)
    config = SandboxConfig(fault_5xx=1.0)
    assert {dice.plan(config, "send").http_status for _ in range(100)} == {502, 503}


def test_drop_after_send_only_hits_sends() -> None:
    dice = FaultDice(seed=1)
    config = SandboxConfig(fault_drop_after_send=1.0)
    assert dice.plan(config, "send").drop_after
    assert not dice.plan(config, "get-token").drop_after
    assert not dice.plan(config, "refresh").drop_after


def test_fault_endpoints_limit_faults_but_not_latency() -> None:
    dice = FaultDice(seed=1)
    config = SandboxConfig(fault_429=1.0, latency_ms=20, fault_endpoints=frozenset({"send"}))
    assert dice.plan(config, "send").before is Fault.HTTP_429
    quiet = dice.plan(config, "quota")
    assert quiet.before is None
    assert quiet.delay_s == pytest.approx(0.02)


def test_latency_stall_and_oauth_latency() -> None:
    dice = FaultDice(seed=1)
    config = SandboxConfig(latency_ms=10, oauth_latency_ms=300, stall_rate=1.0, stall_ms=50)
    send = dice.plan(config, "send")
    assert send.stalled
    assert send.delay_s == pytest.approx(0.06)
    assert dice.plan(config, "refresh").delay_s == pytest.approx(0.35)


def test_a_seed_replays_the_same_faults() -> None:
    config = SandboxConfig(fault_drop=0.3, fault_5xx=0.3, stall_rate=0.5, stall_ms=1)
    assert plans(config) == plans(config)
    rates = [plan.before for plan in plans(config, n=1000)]
    assert 200 < rates.count(Fault.DROP) < 400


def test_an_oas_own_latency_replaces_the_global_one_but_not_the_oauth_one() -> None:
    dice = FaultDice(seed=1)
    config = SandboxConfig(latency_ms=100, oauth_latency_ms=300, stall_rate=1.0, stall_ms=50)
    assert dice.plan(config, "send", oa_latency_ms=2000).delay_s == pytest.approx(2.05)
    assert dice.plan(config, "quota", oa_latency_ms=0).delay_s == pytest.approx(0.05)
    assert dice.plan(config, "send").delay_s == pytest.approx(0.15)
    assert dice.plan(config, "refresh", oa_latency_ms=2000).delay_s == pytest.approx(0.35)
