"""The /_sandbox control API: scripts, listings, validation, loopback-only access."""

from __future__ import annotations

import asyncio
from unittest import mock

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from tests.sandbox.zalo import OTHER_PHONE, PHONE, ZaloCalls, error_of
from zns_dev.sandbox import SandboxConfig, SandboxControl
from zns_dev.sandbox.app import create_app


def test_scripted_error_hits_the_next_matching_calls_only(
    zalo: ZaloCalls, control: SandboxControl
) -> None:
    # Given -115 scripted twice for sends to one phone
    token = zalo.journey()
    other = zalo.journey(OTHER_PHONE)
    control.script(-115, times=2, phone=PHONE, message="Out of money")
    # Then other phones are untouched, the phone gets -115 twice, then normal service
    assert error_of(zalo.send(other, phone=OTHER_PHONE)) == 0
    assert zalo.send(token).json() == {"error": -115, "message": "Out of money"}
    assert error_of(zalo.send(token)) == -115
    assert error_of(zalo.send(token)) == 0
    assert control.stats().errors == {-115: 2}


def test_scripted_149_mid_journey(zalo: ZaloCalls, control: SandboxControl) -> None:
    token = zalo.journey()
    assert error_of(zalo.send(token, template_id=1)) == 0
    control.script(-149, template_id=2)
    assert error_of(zalo.send(token, template_id=2)) == -149
    assert error_of(zalo.send(token, template_id=2)) == 0


def test_scripted_errors_on_other_endpoints(zalo: ZaloCalls, control: SandboxControl) -> None:
    control.script(-100, endpoint="get-token")
    control.script(-14014, endpoint="refresh", message="Invalid refresh token")
    assert error_of(zalo.get_token()) == -100
    refresh = zalo.refresh("sandbox-refresh-token").json()
    assert refresh["error"] == -14014
    assert refresh["error_name"] == "Invalid refresh token"
    assert "access_token" in zalo.refresh("sandbox-refresh-token").json()


def test_listings(zalo: ZaloCalls, control: SandboxControl) -> None:
    token = zalo.journey(token_type="token_logistics_30")
    zalo.send(token)
    zalo.send(zalo.journey(OTHER_PHONE), phone=OTHER_PHONE)
    assert len(control.messages()) == 2
    [mine] = control.messages(PHONE)
    [issued, _] = control.journey_tokens()
    assert (issued.token, issued.token_type, issued.messages_sent) == (
        token,
        "token_logistics_30",
        1,
    )
    assert mine.journey_id == issued.journey_id
    assert control.refreshes() == []
    stats = control.stats()
    assert stats.calls == {"get-token": 2, "send": 2}
    assert (stats.journey_tokens_created, stats.journey_tokens_used) == (2, 2)


def test_reset_forgets_everything(zalo: ZaloCalls, control: SandboxControl) -> None:
    zalo.send(zalo.journey())
    control.advance_clock(3600)
    control.reset()
    stats = control.stats()
    assert (stats.sends_accepted, stats.clock_offset_s, stats.calls) == (0, 0.0, {})
    assert control.messages() == []


def test_bad_control_input_is_http_400(sandbox_url: str, control: SandboxControl) -> None:
    with httpx.Client(base_url=sandbox_url) as http:
        assert http.post("/_sandbox/faults", json={"fault_drop": 2}).status_code == 400
        assert http.post("/_sandbox/faults", json={"port": 1}).status_code == 400
        assert http.post("/_sandbox/clock/advance", json={"seconds": -1}).status_code == 400
        assert http.post("/_sandbox/quota/reset", json={"app_id": "nobody"}).status_code == 400
        assert http.post("/_sandbox/script", json={"error": -1, "endpoint": "x"}).status_code == 400
        assert http.post("/_sandbox/templates", content=b"nope").status_code == 400
        bad_kind = {"template_id": "1", "kind": "sms"}
        assert http.post("/_sandbox/templates", json=bad_kind).status_code == 400
    with pytest.raises(httpx.HTTPStatusError):
        control.set_quota(1, app_id="nobody")
    with pytest.raises(ValueError, match="kind"):
        control.register_template("1", "sms")  # type: ignore[arg-type]


def _call(app: web.Application, method: str, path: str, peer: str) -> web.StreamResponse:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 40000) if name == "peername" else default
    )
    request = make_mocked_request(method, path, app=app, transport=transport)

    async def run() -> web.StreamResponse:
        match = await app.router.resolve(request)
        return await match.handler(request)

    return asyncio.run(run())


def test_control_api_answers_loopback_clients_only() -> None:
    app = create_app(SandboxConfig())
    assert _call(app, "GET", "/_sandbox/stats", "10.1.2.3").status == 403
    assert _call(app, "POST", "/_sandbox/reset", "192.168.0.9").status == 403
    assert _call(app, "GET", "/_sandbox/stats", "127.0.0.1").status == 200
    assert _call(app, "GET", "/_sandbox/stats", "::1").status == 200
