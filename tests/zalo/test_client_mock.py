"""ZaloClient against httpx.MockTransport: every failure class and every quirk, no network."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

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
    ZaloBadResponse,
    ZaloConnectError,
    ZaloDisconnected,
    ZaloError,
    ZaloHTTPError,
    ZaloOAuthError,
    ZaloRateLimited,
    ZaloServerError,
    ZaloTimeout,
    ZaloTransportError,
)
from worker.settings import HttpSettings
from worker.zalo.client import ZaloClient

ACCESS = SecretStr("ACCESS-TOKEN-SHOULD-NEVER-LEAK")
JOURNEY = SecretStr("JOURNEY-TOKEN-SHOULD-NEVER-LEAK")
SECRET = SecretStr("SECRET-KEY-SHOULD-NEVER-LEAK")
REFRESH = SecretStr("REFRESH-TOKEN-SHOULD-NEVER-LEAK")
LEAKS = ("NEVER-LEAK",)

Handler = Callable[[httpx.Request], httpx.Response]


def client_with(handler: Handler) -> ZaloClient:
    return ZaloClient(
        api_base_url="https://api.test",
        oauth_base_url="https://oauth.test",
        transport=httpx.MockTransport(handler),
    )


def answer(body: Any, status: int = 200) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    return handler


def send(client: ZaloClient) -> Any:
    return client.send_template(
        ACCESS,
        JOURNEY,
        phone="84987654321",
        template_id="248791",
        template_data={"order_code": "A1", "amount": 150000},
        tracking_id="t-1",
    )


def assert_no_secret(exc: BaseException) -> None:
    shown = f"{exc} {exc!r} {exc.args!r}"
    for marker in LEAKS:
        assert marker not in shown


# -- successes and quirks --------------------------------------------------------------------


def test_send_posts_headers_and_json_and_parses_string_numbers() -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["path"] = request.url.path
        seen["headers"] = dict(request.headers)
        seen["json"] = json.loads(request.content)
        data = {
            "msg_id": "abc",
            "sent_time": "1700000000000",
            "quota": {"remainingQuota": "499", "dailyQuota": "500"},
        }
        return httpx.Response(200, json={"error": 0, "message": "Success", "data": data})

    result = send(client_with(handler))
    assert seen["path"] == "/message/template"
    assert seen["headers"]["access_token"] == ACCESS.get_secret_value()
    assert seen["headers"]["journey_token"] == JOURNEY.get_secret_value()
    assert seen["json"] == {
        "phone": "84987654321",
        "template_id": "248791",
        "template_data": {"order_code": "A1", "amount": 150000},
        "tracking_id": "t-1",
    }
    assert result.msg_id == "abc"
    assert result.sent_time_ms == 1_700_000_000_000
    assert result.quota is not None
    assert (result.quota.remaining_quota, result.quota.daily_quota) == (499, 500)


def test_numbers_may_also_arrive_as_numbers() -> None:
    data = {"msg_id": "m", "sent_time": 17, "quota": {"remainingQuota": 3, "dailyQuota": 9}}
    result = send(client_with(answer({"error": "0", "data": data})))
    assert result.sent_time_ms == 17
    assert result.quota is not None and result.quota.remaining_quota == 3


def test_get_token_reads_top_level_token_and_defaults_the_type() -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["json"] = json.loads(request.content)
        return httpx.Response(200, json={"error": 0, "token": "tok-1", "journey_id": "j-1"})

    token = client_with(handler).get_journey_token(ACCESS, phone="84987654321")
    assert seen["json"] == {"phone": "84987654321", "token_type": "token_logistics_7"}
    assert token.token.get_secret_value() == "tok-1"
    assert token.journey_id == "j-1"
    assert "tok-1" not in repr(token)


def test_check_token_accepts_the_trailing_space_key() -> None:
    data = {
        "appId": "1",
        "oaId": "2",
        "tokenType ": "token_logistics_7",
        "createdAt": "1700000000000",
        "expiredAt": 1700604800000,
    }
    info = client_with(answer({"error": 0, "data": data})).check_journey_token(ACCESS, JOURNEY)
    assert info.token_type == "token_logistics_7"
    assert info.expired_at_ms - info.created_at_ms == 604_800_000


def test_quota_and_status() -> None:
    quota = client_with(
        answer({"error": 0, "data": {"dailyQuota": "500", "remainingQuota": "0"}})
    ).quota(ACCESS)
    assert (quota.daily_quota, quota.remaining_quota) == (500, 0)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["message_id"] == "m-1"
        return httpx.Response(200, json={"error": 0, "data": {"status": 1, "delivery_time": "5"}})

    status = client_with(handler).message_status(ACCESS, "m-1")
    assert (status.status, status.delivery_time_ms) == (1, 5)


def test_refresh_is_form_encoded_with_secret_header_and_parses_string_expiry() -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"] = str(request.url)
        seen["type"] = request.headers["content-type"]
        seen["secret"] = request.headers["secret_key"]
        seen["form"] = parse_qs(request.content.decode())
        return httpx.Response(
            200, json={"access_token": "a2", "refresh_token": "r2", "expires_in": "90000"}
        )

    pair = client_with(handler).refresh_access_token(
        app_id="app", secret_key=SECRET, refresh_token=REFRESH
    )
    assert seen["url"] == "https://oauth.test/v4/oa/access_token"
    assert seen["type"] == "application/x-www-form-urlencoded"
    assert seen["secret"] == SECRET.get_secret_value()
    assert seen["form"] == {
        "refresh_token": [REFRESH.get_secret_value()],
        "app_id": ["app"],
        "grant_type": ["refresh_token"],
    }
    assert pair.expires_in_s == 90000
    assert pair.access_token.get_secret_value() == "a2"
    assert "a2" not in repr(pair) and "r2" not in repr(pair)


# -- JSON error codes: one representative per class (the table test covers every code) ------


@pytest.mark.parametrize(
    ("code", "exc_type", "error_class"),
    [
        (-100, TransientApiError, ErrorClass.TRANSIENT),
        (-115, AccountError, ErrorClass.ACCOUNT),
        (-106, RequestError, ErrorClass.REQUEST),
        (-108, RecipientError, ErrorClass.RECIPIENT),
        (-1491, TemplateError, ErrorClass.TEMPLATE),
        (-124, AccessTokenError, ErrorClass.ACCESS_TOKEN),
        (-149, JourneyTokenError, ErrorClass.JOURNEY_TOKEN),
        (-144, DailyQuotaError, ErrorClass.QUOTA_DAILY),
        (-147, TemplateQuotaError, ErrorClass.QUOTA_TEMPLATE),
        (-133, NightHoursError, ErrorClass.NIGHT_HOURS),
        (-4242, UnknownApiError, ErrorClass.UNKNOWN),
    ],
)
def test_error_codes_with_http_200_raise_their_class(
    code: int, exc_type: type[ZaloError], error_class: ErrorClass
) -> None:
    with pytest.raises(exc_type) as info:
        send(client_with(answer({"error": code, "message": "nope"})))
    assert info.value.code == code
    assert info.value.error_class is error_class
    assert info.value.endpoint == "/message/template"
    assert_no_secret(info.value)


def test_error_code_as_a_string_is_understood() -> None:
    with pytest.raises(RecipientError):
        send(client_with(answer({"error": "-108", "message": "Phone number is invalid"})))


def test_4xx_carrying_a_zalo_code_is_classified_by_the_code() -> None:
    with pytest.raises(AccessTokenError):
        send(client_with(answer({"error": -124, "message": "expired"}, status=401)))


# -- HTTP statuses and bodies -----------------------------------------------------------------


def test_http_429_is_rate_limited_with_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "7"}, text="slow down")

    with pytest.raises(ZaloRateLimited) as info:
        send(client_with(handler))
    assert info.value.retry_after_s == 7.0
    assert info.value.transient
    assert info.value.error_class is ErrorClass.RATE_LIMITED


def test_http_429_without_retry_after_uses_a_default() -> None:
    with pytest.raises(ZaloRateLimited) as info:
        send(client_with(answer({}, status=429)))
    assert info.value.retry_after_s > 0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_5xx_is_transient(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text="<html>Bad Gateway</html>")

    with pytest.raises(ZaloServerError) as info:
        send(client_with(handler))
    assert info.value.transient and info.value.status_code == status


def test_other_4xx_without_zalo_code_is_an_http_error() -> None:
    with pytest.raises(ZaloHTTPError) as info:
        send(client_with(answer({"detail": "not found"}, status=404)))
    assert not info.value.transient and info.value.status_code == 404


def test_non_json_body_is_a_bad_response() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>maintenance</html>")

    with pytest.raises(ZaloBadResponse) as info:
        send(client_with(handler))
    assert info.value.outcome_unknown
    assert "maintenance" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        {"message": "Success", "data": {}},  # JSON without `error`
        {"error": None},
        {"error": "zero"},
        ["not", "an", "object"],
        {"error": 0.5},
    ],
)
def test_malformed_json_is_a_bad_response(body: Any) -> None:
    with pytest.raises(ZaloBadResponse):
        send(client_with(answer(body)))


@pytest.mark.parametrize(
    ("body", "known"),
    [
        ({"error": 0}, {}),  # success without `data`
        ({"error": "0", "data": []}, {}),
        ({"error": 0, "data": {"msg_id": "x"}}, {"msg_id": "x"}),  # no sent_time
        ({"error": 0, "data": {"msg_id": 12, "sent_time": "t"}}, {"msg_id": "12"}),
        (
            {"error": 0, "data": {"msg_id": "m", "quota": {"remainingQuota": "n/a"}}},
            {"msg_id": "m"},
        ),
    ],
)
def test_an_accepted_send_is_a_result_whatever_its_shape(
    body: Any, known: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # error 0 is Zalo's acceptance: an error here would send the message a second time
    result = send(client_with(answer(body)))
    assert result.msg_id == known.get("msg_id")
    assert result.sent_time_ms is None
    assert result.quota is None or result.quota.remaining_quota is None
    assert "unexpected answer" in caplog.text


# -- transport failures ------------------------------------------------------------------------


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("raised", "expected", "outcome_unknown"),
    [
        (httpx.ConnectError("refused"), ZaloConnectError, False),
        (httpx.ConnectTimeout("connect"), ZaloConnectError, False),
        (httpx.ReadTimeout("read"), ZaloTimeout, True),
        (httpx.WriteTimeout("write"), ZaloTimeout, True),
        (httpx.PoolTimeout("pool"), ZaloTimeout, True),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            ZaloDisconnected,
            True,
        ),
        (httpx.ReadError("reset by peer"), ZaloDisconnected, True),
        (httpx.ProxyError("proxy"), ZaloTransportError, False),
    ],
)
def test_transport_errors_are_transient(
    raised: Exception, expected: type[ZaloError], outcome_unknown: bool
) -> None:
    with pytest.raises(expected) as info:
        send(client_with(raising(raised)))
    assert info.value.transient
    assert info.value.outcome_unknown is outcome_unknown
    assert isinstance(info.value.__cause__, httpx.TransportError)
    assert_no_secret(info.value)


def test_timeouts_are_explicit_for_every_phase() -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["timeout"] = request.extensions["timeout"]
        return httpx.Response(
            200, json={"error": 0, "data": {"dailyQuota": 1, "remainingQuota": 1}}
        )

    settings = HttpSettings(
        connect_timeout_s=1.5, read_timeout_s=2.5, write_timeout_s=3.5, pool_timeout_s=4.5
    )
    client = ZaloClient(
        api_base_url="https://api.test",
        oauth_base_url="https://oauth.test",
        http_settings=settings,
        transport=httpx.MockTransport(handler),
    )
    client.quota(ACCESS)
    assert seen["timeout"] == {"connect": 1.5, "read": 2.5, "write": 3.5, "pool": 4.5}


# -- OAuth failures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            200,
            {"error": -14014, "error_name": "Invalid refresh token", "error_description": "used"},
        ),
        (400, {"error_name": "invalid_grant", "error_description": "Refresh token expired"}),
        (200, {"access_token": "", "refresh_token": "r", "expires_in": "90000"}),
        (200, {}),
    ],
)
def test_oauth_without_access_token_is_a_failure(status: int, body: dict[str, Any]) -> None:
    client = client_with(answer(body, status=status))
    with pytest.raises(ZaloOAuthError) as info:
        client.refresh_access_token(app_id="app", secret_key=SECRET, refresh_token=REFRESH)
    assert not info.value.transient
    assert_no_secret(info.value)
    if "error_name" in body:
        assert body["error_name"] in str(info.value)


def test_oauth_success_missing_refresh_token_is_a_bad_response() -> None:
    client = client_with(answer({"access_token": "a", "expires_in": "90000"}))
    with pytest.raises(ZaloBadResponse):
        client.refresh_access_token(app_id="app", secret_key=SECRET, refresh_token=REFRESH)


def test_oauth_5xx_and_timeouts_are_transient() -> None:
    client = client_with(answer({}, status=503))
    with pytest.raises(ZaloServerError):
        client.refresh_access_token(app_id="app", secret_key=SECRET, refresh_token=REFRESH)
    client = client_with(raising(httpx.ReadTimeout("slow")))
    with pytest.raises(ZaloTimeout) as info:
        client.refresh_access_token(app_id="app", secret_key=SECRET, refresh_token=REFRESH)
    assert info.value.outcome_unknown  # the refresh token may already be consumed


def test_client_repr_holds_no_secret() -> None:
    client = client_with(answer({}))
    assert "api.test" in repr(client)


def test_error_code_too_large_for_an_integer_is_a_bad_response() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"error":1e400}')

    with pytest.raises(ZaloBadResponse):
        send(client_with(handler))


def test_requests_carry_our_user_agent_and_every_timeout_and_follow_no_redirect() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"location": "https://elsewhere.test/"})

    with pytest.raises(ZaloHTTPError):
        send(client_with(handler))
    (request,) = seen  # the redirect was not followed
    assert request.headers["user-agent"].startswith("zns-journey-worker/")
    assert request.headers["journey_token"] == JOURNEY.get_secret_value()
    assert set(request.extensions["timeout"]) == {"connect", "read", "write", "pool"}
    assert all(v is not None for v in request.extensions["timeout"].values())


@pytest.mark.parametrize(
    "data", [{}, {"remainingQuota": "N/A", "dailyQuota": "500"}, {"remainingQuota": [1]}]
)
def test_a_quota_answer_without_a_readable_remaining_quota_is_a_bad_response(
    data: dict[str, Any],
) -> None:
    # The quota call exists for that figure: without it the gate cannot be opened (a send's
    # own figures, by contrast, are informative and may be missing)
    client = client_with(answer({"error": 0, "data": data}))
    with pytest.raises(ZaloBadResponse):
        client.quota(ACCESS)
