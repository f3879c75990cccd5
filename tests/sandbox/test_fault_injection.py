"""Each fault kind at rate 1.0, over real HTTP; the control API is never faulted."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.sandbox.zalo import DATA, OTHER_PHONE, PHONE, ZaloCalls, error_of
from zns_dev.sandbox import SandboxControl

LATENCY_MS = 400  # far above a loopback call, short enough for a test
LATENCY_S = LATENCY_MS / 1000


def test_fault_100_is_a_json_error_with_http_200(zalo: ZaloCalls, control: SandboxControl) -> None:
    control.set_faults(fault_100=1.0)
    response = zalo.get_token()
    assert response.status_code == 200
    assert response.json()["error"] == -100
    assert control.stats().faults == {"-100": 1}
    assert control.stats().journey_tokens_created == 0


def test_fault_5xx_is_an_html_gateway_error(zalo: ZaloCalls, control: SandboxControl) -> None:
    control.set_faults(fault_5xx=1.0)
    response = zalo.quota()
    assert response.status_code in (502, 503)
    assert response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.text


def test_fault_429(zalo: ZaloCalls, control: SandboxControl) -> None:
    control.set_faults(fault_429=1.0)
    response = zalo.refresh("sandbox-refresh-token")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    control.set_faults(fault_429=0.0)
    assert "access_token" in zalo.refresh("sandbox-refresh-token").json()  # nothing was consumed


def test_fault_drop_closes_the_connection_before_processing(
    zalo: ZaloCalls, control: SandboxControl
) -> None:
    token = zalo.journey()
    control.set_faults(fault_drop=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        zalo.send(token)
    stats = control.stats()  # the control API is not faulted
    assert stats.sends_accepted == 0
    assert stats.faults == {"drop": 1}


def test_fault_drop_after_send_processes_then_closes(
    zalo: ZaloCalls, control: SandboxControl
) -> None:
    # Given a sandbox that accepts sends but never answers them
    token = zalo.journey()
    control.set_faults(fault_drop_after_send=1.0)
    # When a send is made, the client sees a dropped connection
    with pytest.raises(httpx.RemoteProtocolError):
        zalo.send(token, tracking_id="lost-answer")
    # Then Zalo did accept it: the message exists and the quota was spent
    [message] = control.messages()
    assert message.tracking_id == "lost-answer"
    assert control.stats().quota["sandbox-app"].remaining_quota == 999_999
    # And other calls are not hit by this fault
    assert error_of(zalo.quota()) == 0


def test_stall_and_latency_delay_without_failing(zalo: ZaloCalls, control: SandboxControl) -> None:
    control.set_faults(stall_rate=1.0, stall_ms=20, latency_ms=5, oauth_latency_ms=5)
    assert error_of(zalo.quota()) == 0
    assert "access_token" in zalo.refresh("sandbox-refresh-token").json()
    assert control.stats().faults == {"stall": 2}


def test_fault_endpoints_choose_which_calls_are_hit(
    zalo: ZaloCalls, control: SandboxControl
) -> None:
    control.set_faults(fault_5xx=1.0, fault_endpoints=["send"])
    token = zalo.journey()
    assert zalo.send(token).status_code in (502, 503)


def test_reset_clears_runtime_faults(zalo: ZaloCalls, control: SandboxControl) -> None:
    control.set_faults(fault_drop=1.0)
    control.reset()
    assert control.faults()["fault_drop"] == 0.0
    assert error_of(zalo.quota()) == 0


def test_a_client_that_times_out_has_still_been_heard(
    zalo: ZaloCalls, control: SandboxControl
) -> None:
    # Given a slow sandbox and an impatient client
    token = zalo.journey()
    control.set_faults(latency_ms=200)
    # When the client gives up before the answer
    with pytest.raises(httpx.ReadTimeout):
        zalo.http.post(
            "/message/template",
            json={"phone": PHONE, "template_id": 1, "template_data": DATA, "tracking_id": "late"},
            headers={"access_token": zalo.access_token, "journey_token": token},
            timeout=0.02,
        )
    # Then the send is still processed once the delay is over (wait for it, bounded)
    deadline = time.monotonic() + 10
    while not control.messages() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [m.tracking_id for m in control.messages()] == ["late"]


def _timed(call: Callable[[], httpx.Response]) -> float:
    started = time.perf_counter()
    assert error_of(call()) == 0
    return time.perf_counter() - started


def test_one_slow_oa_leaves_the_others_fast(zalo: ZaloCalls, control: SandboxControl) -> None:
    # Given an OA whose API calls take 400 ms, beside the sandbox's own OA at no latency
    slow = control.add_oa("slow-app", latency_ms=LATENCY_MS)
    slow_zalo = ZaloCalls(zalo.http, slow.access_token)
    token = zalo.journey()
    # Then each of its calls (told apart by the access token) waits, the other OA's do not
    slow_token = slow_zalo.journey(OTHER_PHONE)
    assert _timed(lambda: slow_zalo.get_token(OTHER_PHONE)) >= LATENCY_S
    assert _timed(lambda: slow_zalo.send(slow_token, phone=OTHER_PHONE)) >= LATENCY_S
    assert _timed(slow_zalo.quota) >= LATENCY_S
    assert _timed(lambda: zalo.send(token)) < LATENCY_S
    assert _timed(zalo.quota) < LATENCY_S
    # And a latency set afterwards, or taken away, applies from the next call
    assert control.set_oa_latency("sandbox-app", LATENCY_MS) == {
        "slow-app": LATENCY_MS,
        "sandbox-app": LATENCY_MS,
    }
    assert control.set_oa_latency("slow-app", None) == {"sandbox-app": LATENCY_MS}
    assert _timed(zalo.quota) >= LATENCY_S
    assert _timed(slow_zalo.quota) < LATENCY_S
    # And a reset forgets it
    control.reset()
    assert _timed(zalo.quota) < LATENCY_S


def test_an_unknown_oa_has_no_latency_to_set(control: SandboxControl) -> None:
    with pytest.raises(httpx.HTTPStatusError) as raised:
        control.set_oa_latency("nobody", 100)
    assert raised.value.response.status_code == 400
    with pytest.raises(ValueError, match="latency_ms"):
        control.set_oa_latency("sandbox-app", -1)
