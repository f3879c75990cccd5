"""The OAuth refresh over real HTTP: form-encoded, single-use rotating refresh tokens."""

from __future__ import annotations

from tests.sandbox.zalo import ZaloCalls, error_of
from zns_dev.sandbox import SandboxControl


def test_refresh_rotates_the_pair(zalo: ZaloCalls) -> None:
    response = zalo.refresh("sandbox-refresh-token")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "expires_in"}
    assert body["expires_in"] == "90000"
    assert body["refresh_token"] != "sandbox-refresh-token"
    # Both access tokens work: the old one lives until its own expiry.
    assert error_of(zalo.quota(access_token=body["access_token"])) == 0
    assert error_of(zalo.quota()) == 0


def test_reusing_a_consumed_refresh_token_fails_and_is_counted(
    zalo: ZaloCalls, control: SandboxControl
) -> None:
    # Given a refresh that consumed the bootstrap refresh token
    new_refresh = zalo.refresh("sandbox-refresh-token").json()["refresh_token"]
    # When a second refresher presents the consumed token
    response = zalo.refresh("sandbox-refresh-token")
    # Then OAuth refuses it in its own shape, with HTTP 200, and the reuse is counted
    assert response.status_code == 200
    assert response.json() == {
        "error": -14014,
        "error_name": "Invalid refresh token",
        "error_description": "Refresh token is invalid, expired or already used",
    }
    stats = control.stats()
    assert stats.refresh_token_reuses == 1
    assert (stats.refresh_attempts, stats.refresh_successes, stats.refresh_failures) == (2, 1, 1)
    assert [attempt.reused_consumed for attempt in control.refreshes()] == [False, True]
    # And the newest refresh token is still good
    assert "access_token" in zalo.refresh(new_refresh).json()


def test_wrong_secret_or_app_and_json_bodies_fail(zalo: ZaloCalls, control: SandboxControl) -> None:
    assert error_of(zalo.refresh("sandbox-refresh-token", secret_key="wrong")) == -14002
    assert error_of(zalo.refresh("sandbox-refresh-token", app_id="other")) == -14002
    as_json = zalo.http.post(
        "/v4/oa/access_token",
        json={"refresh_token": "sandbox-refresh-token", "app_id": "sandbox-app"},
        headers={"secret_key": "sandbox-secret"},
    )
    assert error_of(as_json) < 0
    assert "access_token" not in as_json.json()
    assert control.stats().refresh_token_reuses == 0
    assert "access_token" in zalo.refresh("sandbox-refresh-token").json()  # nothing was burnt


def test_expired_access_token_then_refresh(zalo: ZaloCalls, control: SandboxControl) -> None:
    token = zalo.journey()
    assert control.expire_access_tokens() == 1
    assert error_of(zalo.send(token)) == -124
    zalo.access_token = zalo.refresh("sandbox-refresh-token").json()["access_token"]
    assert error_of(zalo.send(token)) == 0


def test_a_second_oa_has_its_own_grant_and_quota(zalo: ZaloCalls, control: SandboxControl) -> None:
    spec = control.add_oa("shop-2", daily_quota=1)
    other = ZaloCalls(zalo.http, spec.access_token)
    token = other.journey()
    assert error_of(zalo.send(token)) == -149  # a token belongs to the OA that created it
    assert error_of(other.send(token)) == 0
    assert error_of(other.send(token)) == -144
    assert error_of(zalo.send(zalo.journey())) == 0
    refreshed = other.refresh(spec.refresh_token, app_id="shop-2", secret_key=spec.secret_key)
    assert "access_token" in refreshed.json()
    quota = control.stats().quota
    assert (quota["shop-2"].remaining_quota, quota["sandbox-app"].remaining_quota) == (0, 999_999)
