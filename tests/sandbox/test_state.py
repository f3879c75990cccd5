"""SandboxState: the rules of each Zalo call, driven by a fake clock (no HTTP, no sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from zns_dev.sandbox.config import SandboxConfig
from zns_dev.sandbox.records import AccountSpec, ScriptedError, TemplateSpec
from zns_dev.sandbox.state import (
    DAY_S,
    ApiFailure,
    OAuthFailure,
    SandboxState,
    is_valid_phone,
    is_valid_tracking_id,
    is_vietnam_night,
    vietnam_day,
)

# 2026-01-05 10:00 in Vietnam (03:00 UTC): daytime, 14 h before the quota resets.
START = datetime(2026, 1, 5, 3, 0, tzinfo=UTC).timestamp()
HOUR = 3600
PHONE = "84987654321"
OTHER_PHONE = "84912345678"
ACCESS = "sandbox-access-token"
DATA = {"order_code": "ORD-1", "status": "shipped"}


class FakeClock:
    """A wall clock that only moves when told to."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_state(**config: object) -> SandboxState:
    return SandboxState(SandboxConfig.model_validate(config), FakeClock())


def journey(state: SandboxState, token_type: str | None = None, phone: str = PHONE) -> str:
    payload = {"phone": phone} if token_type is None else {"phone": phone, "token_type": token_type}
    return state.create_journey_token(ACCESS, payload).token


def send(
    state: SandboxState,
    token: str | None,
    *,
    phone: str = PHONE,
    template_id: object = "231001",
    template_data: object = DATA,
    tracking_id: object = "track-1",
    access_token: str = ACCESS,
) -> str:
    payload = {
        "phone": phone,
        "template_id": template_id,
        "template_data": template_data,
        "tracking_id": tracking_id,
    }
    return state.send(access_token, token, payload).message.msg_id


def api_code(call: object, *args: object, **kwargs: object) -> int:
    assert callable(call)
    with pytest.raises(ApiFailure) as failure:
        call(*args, **kwargs)
    return failure.value.code


def refresh(state: SandboxState, token: str, **overrides: str | None) -> str:
    fields: dict[str, str | None] = {
        "app_id": "sandbox-app",
        "secret_key": "sandbox-secret",
        "refresh_token": token,
        "grant_type": "refresh_token",
        **overrides,
    }
    pair = state.refresh(**fields)
    return pair.refresh_token


# -- Vietnam time, phones, tracking ids --------------------------------------------------


def test_vietnam_day_changes_at_midnight_vietnam_time() -> None:
    midnight_vn = datetime(2026, 1, 5, 17, 0, tzinfo=UTC).timestamp()  # 00:00 on the 6th in VN
    assert vietnam_day(midnight_vn) == vietnam_day(midnight_vn - 1) + 1


@pytest.mark.parametrize(
    ("hour_utc", "night"), [(14, False), (15, True), (22, True), (23, False), (3, False)]
)
def test_night_is_22_to_06_vietnam_time(hour_utc: int, night: bool) -> None:
    # 15:00 UTC = 22:00 VN, 22:59 UTC = 05:59 VN, 23:00 UTC = 06:00 VN.
    moment = datetime(2026, 1, 5, hour_utc, 59 if hour_utc == 22 else 0, tzinfo=UTC).timestamp()
    assert is_vietnam_night(moment) is night


@pytest.mark.parametrize(
    ("phone", "valid"),
    [
        ("84987654321", True),
        ("0987654321", False),
        ("+84987654321", False),
        ("8498765432", False),
        ("849876543210", False),
        ("84\uff1987654321", False),  # a full-width digit: isdigit() but not ASCII
        (84987654321, False),
        (None, False),
    ],
)
def test_phone_is_84_and_nine_digits(phone: object, valid: bool) -> None:
    assert is_valid_phone(phone) is valid


@pytest.mark.parametrize(
    ("tracking_id", "valid"),
    [
        (None, True),
        ("order-1_step_2", True),
        ("x" * 48, True),
        ("x" * 49, False),
        ("has space", False),
        ("colon:sep", False),
        (12, False),
    ],
)
def test_tracking_id_rules(tracking_id: object, valid: bool) -> None:
    assert is_valid_tracking_id(tracking_id) is valid


# -- access tokens and refresh ------------------------------------------------------------


def test_refresh_rotates_and_the_old_refresh_token_is_single_use() -> None:
    state = make_state()
    # Given one successful refresh
    new_refresh = refresh(state, "sandbox-refresh-token")
    # When the consumed refresh token is presented again
    with pytest.raises(OAuthFailure) as failure:
        refresh(state, "sandbox-refresh-token")
    # Then it fails with OAuth's invalid-refresh-token error, counted as a reuse
    assert failure.value.code == -14014
    assert state.stats().refresh_token_reuses == 1
    assert [a.reused_consumed for a in state.refreshes()] == [False, True]
    # And the new refresh token still works (reuse does not revoke by default)
    assert refresh(state, new_refresh) != new_refresh
    assert state.stats().refresh_successes == 2
    assert state.stats().refresh_failures == 1


def test_refresh_keeps_the_old_access_token_until_its_own_expiry() -> None:
    clock = FakeClock()
    state = SandboxState(SandboxConfig(access_token_ttl_s=1000), clock)
    pair = state.refresh(
        app_id="sandbox-app",
        secret_key="sandbox-secret",
        refresh_token="sandbox-refresh-token",
        grant_type="refresh_token",
    )
    assert pair.expires_in_s == 1000
    assert state.authenticate(ACCESS).app_id == "sandbox-app"
    assert state.authenticate(pair.access_token).app_id == "sandbox-app"
    clock.now += 1000
    assert api_code(state.authenticate, ACCESS) == -124
    assert api_code(state.authenticate, pair.access_token) == -124


def test_reuse_revokes_the_grant_when_configured() -> None:
    state = make_state(refresh_reuse_revokes=True)
    new_refresh = refresh(state, "sandbox-refresh-token")
    with pytest.raises(OAuthFailure):
        refresh(state, "sandbox-refresh-token")
    with pytest.raises(OAuthFailure) as failure:
        refresh(state, new_refresh)
    # The reuse killed the grant: the newest refresh token fails too (a revoked token, not a reuse).
    assert failure.value.code == -14014
    assert state.stats().refresh_token_reuses == 1
    assert [a.reused_consumed for a in state.refreshes()] == [False, True, False]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"secret_key": "wrong"}, -14002),
        ({"secret_key": None}, -14002),
        ({"app_id": "nobody"}, -14002),
        ({"grant_type": "authorization_code"}, -14001),
        ({"refresh_token": "never-issued"}, -14014),
        ({"refresh_token": None}, -14014),
    ],
)
def test_refresh_failures(overrides: dict[str, str | None], code: int) -> None:
    state = make_state()
    with pytest.raises(OAuthFailure) as failure:
        refresh(state, "sandbox-refresh-token", **overrides)
    assert failure.value.code == code
    assert state.stats().refresh_token_reuses == 0
    assert state.refreshes()[0].error == code


def test_refresh_token_expires_after_its_ttl() -> None:
    clock = FakeClock()
    state = SandboxState(SandboxConfig(refresh_token_ttl_s=10), clock)
    clock.now += 10
    with pytest.raises(OAuthFailure) as failure:
        refresh(state, "sandbox-refresh-token")
    assert failure.value.code == -14014


def test_access_token_dies_after_max_sends_and_a_refresh_brings_a_working_one() -> None:
    state = make_state(access_token_max_sends=2)
    token = journey(state)
    send(state, token)
    send(state, token)
    assert api_code(send, state, token) == -124
    assert api_code(state.quota, ACCESS) == -124
    pair = state.refresh(
        app_id="sandbox-app",
        secret_key="sandbox-secret",
        refresh_token="sandbox-refresh-token",
        grant_type="refresh_token",
    )
    send(state, token, access_token=pair.access_token)


def test_expire_access_tokens_now() -> None:
    state = make_state()
    assert state.expire_access_tokens() == 1
    assert api_code(state.authenticate, ACCESS) == -124
    assert api_code(state.authenticate, None) == -124


# -- journey tokens ------------------------------------------------------------------------


def test_journey_token_lifetime_follows_its_type() -> None:
    clock = FakeClock()
    state = SandboxState(SandboxConfig(access_token_ttl_s=365 * DAY_S), clock)
    short = journey(state)
    long = journey(state, "token_logistics_30")
    clock.now += 7 * DAY_S
    assert api_code(send, state, short) == -150
    assert api_code(state.check_journey_token, ACCESS, short) == -150
    send(state, long)
    clock.now += 23 * DAY_S
    assert api_code(send, state, long) == -150


def test_journey_token_is_bound_to_its_phone_and_oa() -> None:
    state = make_state()
    state.add_account(
        AccountSpec(
            app_id="app-2",
            secret_key="s2",
            oa_id="oa-2",
            access_token="access-2",
            refresh_token="refresh-2",
        )
    )
    token = journey(state)
    assert api_code(send, state, token, phone=OTHER_PHONE) == -149
    assert api_code(send, state, token, access_token="access-2") == -149
    assert api_code(send, state, "never-issued") == -149
    assert api_code(send, state, None) == -148
    assert api_code(send, state, "") == -148


@pytest.mark.parametrize(
    ("token_type", "kind", "code"),
    [
        ("token_logistics_7", "coach_bus", -1491),
        ("token_coach_bus_30", "logistics", -1491),
        ("token_coach_bus_7", "coach_bus", 0),
        ("token_logistics_7", "invalid", -109),
    ],
)
def test_template_family_must_match_the_token(token_type: str, kind: str, code: int) -> None:
    state = make_state()
    state.add_template(TemplateSpec.model_validate({"template_id": "777", "kind": kind}))
    token = journey(state, token_type)
    if code:
        assert api_code(send, state, token, template_id=777) == code
    else:
        send(state, token, template_id=777)


def test_unknown_token_type_is_a_parameter_error() -> None:
    state = make_state()
    assert api_code(journey, state, "token_express_7") == -132
    assert api_code(journey, state, None, "0987654321") == -108
    assert api_code(state.create_journey_token, ACCESS, None) == -122


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("phone", "0987654321", -108),
        ("template_id", None, -109),
        ("template_id", True, -109),
        ("template_data", {}, -111),
        ("template_data", ["a"], -111),
        ("tracking_id", "t" * 49, -132),
    ],
)
def test_send_validation(field: str, value: object, code: int) -> None:
    state = make_state()
    token = journey(state)
    assert api_code(send, state, token, **{field: value}) == code
    assert state.stats().quota["sandbox-app"].remaining_quota == state.config.daily_quota


def test_first_message_marks_the_journey_used_and_duplicates_are_counted() -> None:
    state = make_state()
    token = journey(state)
    journey(state)  # created, never used: a wasted journey
    send(state, token, tracking_id="same")
    send(state, token, tracking_id="same")
    stats = state.stats()
    assert (stats.journey_tokens_created, stats.journey_tokens_used) == (2, 1)
    assert stats.sends_accepted == 2
    assert stats.duplicate_tracking_ids == 1
    assert state.journey_tokens()[0].messages_sent == 2


# -- quota, night hours --------------------------------------------------------------------


def test_quota_is_spent_by_successful_sends_only_and_comes_back_at_midnight_vn() -> None:
    clock = FakeClock()
    state = SandboxState(SandboxConfig(daily_quota=2), clock)
    token = journey(state)
    assert api_code(send, state, token, template_data={}) == -111
    assert state.send(ACCESS, token, {"phone": PHONE, "template_id": 1, "template_data": DATA})
    assert state.quota(ACCESS).remaining_quota == 1
    send(state, token)
    assert api_code(send, state, token) == -144
    clock.now += 14 * HOUR - 1  # 23:59:59 in Vietnam
    assert api_code(send, state, token) == -144
    clock.now += 1  # midnight
    assert state.quota(ACCESS).remaining_quota == 2
    send(state, token)


def test_quota_can_be_set_and_reset_on_demand() -> None:
    state = make_state()
    state.set_quota(5, remaining=0)
    token = journey(state)
    assert api_code(send, state, token) == -144
    state.reset_quota()
    assert state.quota(ACCESS).remaining_quota == 5
    with pytest.raises(KeyError):
        state.reset_quota("nobody")


def test_template_daily_limit() -> None:
    state = make_state()
    state.add_template(TemplateSpec(template_id="231001", daily_limit=1))
    token = journey(state)
    send(state, token)
    assert api_code(send, state, token) == -147
    send(state, token, template_id="other")


def test_night_hours() -> None:
    clock = FakeClock()
    state = SandboxState(SandboxConfig(night_hours=True, access_token_ttl_s=3 * DAY_S), clock)
    token = journey(state, "token_logistics_30")
    clock.now += 12 * HOUR  # 22:00 in Vietnam
    assert api_code(send, state, token) == -133
    clock.now += 8 * HOUR  # 06:00
    send(state, token)
    state.update_settings({"night_hours": False})
    clock.now += 17 * HOUR  # 23:00
    send(state, token)


# -- control -------------------------------------------------------------------------------


def test_scripts_match_consume_and_expire() -> None:
    state = make_state()
    state.add_script(ScriptedError(error=-115, times=2, phone=PHONE, template_id="9"))
    assert state.take_script("send", OTHER_PHONE, "9") is None
    assert state.take_script("get-token", PHONE, "9") is None
    first = state.take_script("send", PHONE, 9)
    assert first is not None
    assert first.error == -115
    assert state.take_script("send", PHONE, "9") is not None
    assert state.take_script("send", PHONE, "9") is None


def test_reset_restores_the_start_up_config_and_forgets_everything() -> None:
    state = make_state(latency_ms=5)
    send(state, journey(state))
    state.update_settings({"latency_ms": 50, "fault_5xx": 0.5})
    state.clock.advance(100)
    refresh(state, "sandbox-refresh-token")
    state.reset()
    assert state.config.latency_ms == 5
    assert state.config.fault_5xx == 0.0
    assert state.clock.offset_s == 0.0
    assert state.messages() == []
    assert state.stats().sends_accepted == 0
    assert refresh(state, "sandbox-refresh-token")  # the bootstrap refresh token is fresh again


def test_settings_are_validated() -> None:
    state = make_state()
    with pytest.raises(ValueError, match="less than or equal"):
        state.update_settings({"fault_drop": 1.5})
    with pytest.raises(ValueError, match="unknown endpoints"):
        state.update_settings({"fault_endpoints": ["send", "webhook"]})
    with pytest.raises(ValueError, match="forward"):
        state.clock.advance(-1)


def test_messages_filter_and_status() -> None:
    state = make_state()
    msg_id = send(state, journey(state))
    send(state, journey(state, phone=OTHER_PHONE), phone=OTHER_PHONE)
    assert [m.msg_id for m in state.messages(PHONE)] == [msg_id]
    assert len(state.messages()) == 2
    assert state.message_status(ACCESS, msg_id).phone == PHONE
    assert api_code(state.message_status, ACCESS, "nope") == -107
