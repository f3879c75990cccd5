"""ZaloClient against the sandbox over real HTTP on loopback: each error class and each quirk."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from tests.support import free_port
from worker.errors import (
    AccessTokenError,
    AccountError,
    DailyQuotaError,
    ErrorClass,
    JourneyTokenError,
    NightHoursError,
    RecipientError,
    RequestError,
    TemplateError,
    TemplateQuotaError,
    TransientApiError,
    UnknownApiError,
    ZaloConnectError,
    ZaloDisconnected,
    ZaloError,
    ZaloOAuthError,
    ZaloRateLimited,
    ZaloServerError,
    ZaloTimeout,
)
from worker.settings import HttpSettings
from worker.zalo.client import ZaloClient
from zns_dev.sandbox.control import SandboxControl

ACCESS = SecretStr("sandbox-access-token")
SECRET = SecretStr("sandbox-secret")
PHONE = "84987654321"


@pytest.fixture
def client(sandbox_url: str) -> Iterator[ZaloClient]:
    settings = HttpSettings(read_timeout_s=2.0)
    with ZaloClient(
        api_base_url=sandbox_url, oauth_base_url=sandbox_url, http_settings=settings
    ) as c:
        yield c


def send(
    client: ZaloClient, token: SecretStr, template_id: str = "100", phone: str = PHONE
) -> object:
    return client.send_template(
        ACCESS,
        token,
        phone=phone,
        template_id=template_id,
        template_data={"a": "1"},
        tracking_id="t1",
    )


def test_token_send_check_quota_status_round_trip(
    client: ZaloClient, control: SandboxControl
) -> None:
    control.set_quota(500)
    token = client.get_journey_token(ACCESS, phone=PHONE, token_type="token_logistics_30")
    result = client.send_template(
        ACCESS,
        token.token,
        phone=PHONE,
        template_id="100",
        template_data={"n": 1},
        tracking_id="t-1",
    )
    assert isinstance(result.sent_time_ms, int) and result.sent_time_ms > 0
    assert result.quota is not None and result.quota.remaining_quota == 499
    info = client.check_journey_token(ACCESS, token.token)  # the "tokenType " key
    assert info.token_type == "token_logistics_30"
    assert info.expired_at_ms - info.created_at_ms == 30 * 86_400_000
    quota = client.quota(ACCESS)
    assert (quota.daily_quota, quota.remaining_quota) == (500, 499)
    assert result.msg_id is not None
    assert client.message_status(ACCESS, result.msg_id).status in (0, 1)


def test_refresh_rotates_and_a_consumed_refresh_token_is_an_oauth_error(
    client: ZaloClient, control: SandboxControl
) -> None:
    pair = client.refresh_access_token(
        app_id="sandbox-app", secret_key=SECRET, refresh_token=SecretStr("sandbox-refresh-token")
    )
    assert pair.expires_in_s > 0
    assert pair.refresh_token.get_secret_value() != "sandbox-refresh-token"
    with pytest.raises(ZaloOAuthError) as info:
        client.refresh_access_token(
            app_id="sandbox-app",
            secret_key=SECRET,
            refresh_token=SecretStr("sandbox-refresh-token"),
        )
    assert "sandbox-refresh-token" not in str(info.value)
    assert control.stats().refresh_token_reuses == 1
    with pytest.raises(ZaloOAuthError):
        client.refresh_access_token(
            app_id="sandbox-app", secret_key=SecretStr("wrong"), refresh_token=pair.refresh_token
        )


def test_journey_token_errors(client: ZaloClient, control: SandboxControl) -> None:
    with pytest.raises(JourneyTokenError) as info:
        send(client, SecretStr("no-such-token"))
    assert info.value.code == -149
    token = client.get_journey_token(ACCESS, phone=PHONE).token
    with pytest.raises(JourneyTokenError) as info:
        send(client, token, phone="84912345678")  # another phone's token
    assert info.value.code == -149
    control.advance_clock(7 * 86_400 + 1)  # the OA access token (~25 h) has expired as well
    fresh = client.refresh_access_token(
        app_id="sandbox-app", secret_key=SECRET, refresh_token=SecretStr("sandbox-refresh-token")
    )
    with pytest.raises(JourneyTokenError) as info:
        client.send_template(
            fresh.access_token,
            token,
            phone=PHONE,
            template_id="100",
            template_data={"a": "1"},
            tracking_id="t1",
        )
    assert info.value.code == -150


def test_token_type_mismatch_is_a_template_error(
    client: ZaloClient, control: SandboxControl
) -> None:
    control.register_template("777", "coach_bus")
    token = client.get_journey_token(ACCESS, phone=PHONE).token
    with pytest.raises(TemplateError) as info:
        send(client, token, template_id="777")
    assert info.value.code == -1491


def test_quota_and_access_token_and_recipient(client: ZaloClient, control: SandboxControl) -> None:
    token = client.get_journey_token(ACCESS, phone=PHONE).token
    control.set_quota(10, remaining=0)
    with pytest.raises(DailyQuotaError) as quota_info:
        send(client, token)
    assert quota_info.value.code == -144
    with pytest.raises(RecipientError):
        client.get_journey_token(ACCESS, phone="8412")
    control.expire_access_tokens()
    with pytest.raises(AccessTokenError) as access_info:
        client.quota(ACCESS)
    assert access_info.value.code == -124


@pytest.mark.parametrize(
    ("code", "expected", "error_class"),
    [
        (-100, TransientApiError, ErrorClass.TRANSIENT),
        (-115, AccountError, ErrorClass.ACCOUNT),
        (-106, RequestError, ErrorClass.REQUEST),
        (-118, RecipientError, ErrorClass.RECIPIENT),
        (-131, TemplateError, ErrorClass.TEMPLATE),
        (-216, AccessTokenError, ErrorClass.ACCESS_TOKEN),
        (-148, JourneyTokenError, ErrorClass.JOURNEY_TOKEN),
        (-126, DailyQuotaError, ErrorClass.QUOTA_DAILY),
        (-147, TemplateQuotaError, ErrorClass.QUOTA_TEMPLATE),
        (-133, NightHoursError, ErrorClass.NIGHT_HOURS),
        (-4242, UnknownApiError, ErrorClass.UNKNOWN),
    ],
)
def test_every_class_over_http(
    client: ZaloClient,
    control: SandboxControl,
    code: int,
    expected: type[ZaloError],
    error_class: ErrorClass,
) -> None:
    token = client.get_journey_token(ACCESS, phone=PHONE).token
    control.script(code, endpoint="send")
    with pytest.raises(expected) as info:
        send(client, token)
    assert info.value.code == code and info.value.error_class is error_class


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("fault_5xx", ZaloServerError),
        ("fault_429", ZaloRateLimited),
        ("fault_drop", ZaloDisconnected),
    ],
)
def test_http_faults(
    client: ZaloClient, control: SandboxControl, fault: str, expected: type[ZaloError]
) -> None:
    control.set_faults(**{fault: 1.0})
    with pytest.raises(expected) as info:
        client.quota(ACCESS)
    assert info.value.transient


def test_read_timeout_is_a_timeout_with_unknown_outcome(
    client: ZaloClient, control: SandboxControl
) -> None:
    control.set_faults(stall_rate=1.0, stall_ms=5000)
    with pytest.raises(ZaloTimeout) as info:
        client.quota(ACCESS)
    assert info.value.outcome_unknown


def test_nothing_listening_is_a_connect_error() -> None:
    port = free_port()
    with socket.socket():
        pass
    with (
        ZaloClient(
            api_base_url=f"http://127.0.0.1:{port}", oauth_base_url=f"http://127.0.0.1:{port}"
        ) as c,
        pytest.raises(ZaloConnectError) as info,
    ):
        c.quota(ACCESS)
    assert not info.value.outcome_unknown
