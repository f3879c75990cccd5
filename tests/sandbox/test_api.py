"""The Zalo API over real HTTP: shapes, string numbers, HTTP 200 errors, token and quota rules."""

from __future__ import annotations

import pytest

from tests.sandbox.zalo import DATA, OTHER_PHONE, PHONE, TEMPLATE, ZaloCalls, error_of
from zns_dev.sandbox import SandboxControl

DAY_S = 86_400
HOUR_S = 3_600


def test_get_token_answers_at_top_level(zalo: ZaloCalls) -> None:
    body = zalo.get_token().json()
    assert body["error"] == 0
    assert body["message"] == "Success"
    assert body["token"]
    assert body["journey_id"]
    assert "data" not in body


def test_send_success_reports_numbers_as_strings(zalo: ZaloCalls, control: SandboxControl) -> None:
    response = zalo.send(zalo.journey())
    assert response.status_code == 200
    body = response.json()
    assert body["error"] == 0
    data = body["data"]
    assert isinstance(data["sent_time"], str)
    assert data["sent_time"].isdigit()
    assert data["quota"] == {"remainingQuota": "999999", "dailyQuota": "1000000"}
    [message] = control.messages()
    assert message.msg_id == data["msg_id"]
    assert (message.phone, message.template_id, message.template_data) == (PHONE, TEMPLATE, DATA)
    assert message.tracking_id == "track-1"
    assert str(message.sent_time_ms) == data["sent_time"]


def test_check_token_key_has_a_trailing_space(zalo: ZaloCalls) -> None:
    token = zalo.journey(token_type="token_coach_bus_30")
    data = zalo.check_token(token).json()["data"]
    assert data["tokenType "] == "token_coach_bus_30"
    assert "tokenType" not in data
    assert (data["appId"], data["oaId"]) == ("sandbox-app", "sandbox-oa")
    assert int(data["expiredAt"]) - int(data["createdAt"]) == 30 * DAY_S * 1000


def test_quota_and_status(zalo: ZaloCalls) -> None:
    msg_id = zalo.send(zalo.journey()).json()["data"]["msg_id"]
    quota = zalo.quota().json()["data"]
    assert (quota["dailyQuota"], quota["remainingQuota"]) == ("1000000", "999999")
    assert zalo.quota().json()["data"]["remainingQuota"] == "999999"  # asking is free
    status = zalo.status(msg_id).json()["data"]
    assert status["status"] == 1
    assert status["delivery_time"].isdigit()
    assert error_of(zalo.status("unknown")) == -107


def test_every_call_needs_a_live_access_token(zalo: ZaloCalls) -> None:
    token = zalo.journey()
    bad = "not-a-token"
    responses = [
        zalo.get_token(access_token=bad),
        zalo.send(token, access_token=bad),
        zalo.quota(access_token=bad),
    ]
    for response in responses:
        assert response.json() == {"error": -124, "message": "Access token is invalid"}
        assert response.status_code == 200


def test_journey_token_errors(zalo: ZaloCalls, control: SandboxControl) -> None:
    token = zalo.journey()
    control.register_template("888", "coach_bus")
    assert error_of(zalo.send(None)) == -148
    assert error_of(zalo.send("never-issued")) == -149
    assert error_of(zalo.send(token, phone=OTHER_PHONE)) == -149
    assert error_of(zalo.send(token, template_id=888)) == -1491
    assert error_of(zalo.send(token, phone="0987654321")) == -108
    assert error_of(zalo.get_token("0987654321")) == -108
    assert error_of(zalo.send(token, template_data={})) == -111
    assert error_of(zalo.send(token, tracking_id="x" * 49)) == -132
    assert error_of(zalo.get_token(token_type="token_bike_7")) == -132
    assert control.stats().errors == {
        -148: 1,
        -149: 2,
        -1491: 1,
        -108: 2,
        -111: 1,
        -132: 2,
    }


def test_journey_token_expiry_follows_the_virtual_clock(
    zalo: ZaloCalls, control: SandboxControl
) -> None:
    # Given a 7-day and a 30-day token, and an access token that outlives the test
    short = zalo.journey()
    long = zalo.journey(token_type="token_logistics_30")
    # When the virtual clock passes 7 days (the access token dies too: refresh it)
    control.advance_clock(7 * DAY_S + 1)
    assert error_of(zalo.send(short)) == -124
    zalo.access_token = zalo.refresh("sandbox-refresh-token").json()["access_token"]
    # Then the 7-day token has expired and the 30-day token still works
    assert error_of(zalo.send(short)) == -150
    assert error_of(zalo.check_token(short)) == -150
    assert error_of(zalo.send(long)) == 0


def test_quota_runs_out_with_144_and_comes_back_on_reset(
    zalo: ZaloCalls, control: SandboxControl
) -> None:
    control.set_quota(2)
    token = zalo.journey()
    assert zalo.send(token).json()["data"]["quota"]["remainingQuota"] == "1"
    assert zalo.send(token).json()["data"]["quota"]["remainingQuota"] == "0"
    assert error_of(zalo.send(token)) == -144
    assert zalo.quota().json()["data"]["remainingQuota"] == "0"
    control.reset_quota()
    assert zalo.send(token).json()["data"]["quota"] == {"remainingQuota": "1", "dailyQuota": "2"}


def test_quota_comes_back_at_midnight_vietnam_time(
    zalo: ZaloCalls, control: SandboxControl
) -> None:
    control.set_quota(1, remaining=0)
    token = zalo.journey(token_type="token_logistics_30")
    assert error_of(zalo.send(token)) == -144
    control.advance_clock(DAY_S)  # a midnight has passed, whatever the wall time
    control.expire_access_tokens()
    zalo.access_token = zalo.refresh("sandbox-refresh-token").json()["access_token"]
    assert error_of(zalo.send(token)) == 0


def test_night_hours_are_switchable_at_runtime(zalo: ZaloCalls, control: SandboxControl) -> None:
    # Given night hours on and the virtual clock moved to the next 23:00 in Vietnam
    token = zalo.journey(token_type="token_logistics_30")
    control.set_faults(night_hours=True)
    vietnam_s = (control.stats().now_ms // 1000 + 7 * HOUR_S) % DAY_S
    control.advance_clock((23 * HOUR_S - vietnam_s) % DAY_S)
    # Then sends are refused with -133
    assert error_of(zalo.send(token)) == -133
    # Until 06:00 (the access token died meanwhile: refresh it)
    control.advance_clock(7 * HOUR_S)
    zalo.access_token = zalo.refresh("sandbox-refresh-token").json()["access_token"]
    assert error_of(zalo.send(token)) == 0
    # And switching night hours off lets sends through at any hour
    control.advance_clock(17 * HOUR_S)
    control.set_faults(night_hours=False)
    assert error_of(zalo.send(token)) == 0


def test_access_token_max_sends_forces_expiry(zalo: ZaloCalls, control: SandboxControl) -> None:
    control.set_faults(access_token_max_sends=1)
    token = zalo.journey()
    assert error_of(zalo.send(token)) == 0
    assert error_of(zalo.send(token)) == -124


def test_invalid_template_and_template_daily_limit(
    zalo: ZaloCalls, control: SandboxControl
) -> None:
    control.register_template(404, "invalid")
    control.register_template(TEMPLATE, daily_limit=1)
    token = zalo.journey()
    assert error_of(zalo.send(token, template_id=404)) == -109
    assert error_of(zalo.send(token)) == 0
    assert error_of(zalo.send(token)) == -147


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]"])
def test_a_body_that_is_not_a_json_object(zalo: ZaloCalls, body: bytes) -> None:
    response = zalo.http.post(
        "/message/template",
        content=body,
        headers={"access_token": zalo.access_token, "journey_token": zalo.journey()},
    )
    assert error_of(response) == -122
