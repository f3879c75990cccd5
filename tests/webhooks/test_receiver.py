"""The receiver over real HTTP with a private Redis: documented answers, nothing stored on a
refusal, each event recorded once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import REGISTRY

from tests.webhooks.conftest import (
    APP_ID,
    SHOP_APP_ID,
    SHOP_SECRET,
    event,
    now_ms,
    signed,
    snapshot,
)
from worker.settings import Settings
from worker.state.connection import redis_client
from worker.state.keys import Keys
from worker.state.pauses import AccountState
from worker.state.quota import QuotaStore

Post = Callable[..., httpx.Response]


def count(event_label: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "zns_webhook_events_total", {"event": event_label, "outcome": outcome}
    )
    return value or 0.0


def refused(post: Post, raw_redis: redis.Redis, body: bytes, headers: dict[str, str]) -> Any:
    """Post, and check that nothing at all changed in Redis; returns the response."""
    before = snapshot(raw_redis)
    response = post(body, headers)
    assert snapshot(raw_redis) == before
    return response


def test_permission_revoked_pauses_the_account(
    post: Post, hook_settings: Settings, redis_url: str
) -> None:
    # Given a signed permission_revoked event for the default account
    body, headers = signed(event("permission_revoked", oa_id="oa-1"))
    before = count("permission_revoked", "accepted")
    # When Zalo posts it
    response = post(body, headers)
    # Then it is accepted and the account is paused
    assert response.status_code == 200
    assert response.json() == {"result": "accepted"}
    client = redis_client(redis_url)
    pause = AccountState(client, Keys("zns"), clock=lambda: 0).status("default")
    assert pause is not None and "permission_revoked" in pause.reason
    assert count("permission_revoked", "accepted") == before + 1


def test_the_shop_account_signs_with_its_app_secret(post: Post, redis_url: str) -> None:
    data = {"app_id": SHOP_APP_ID, "event_name": "permission_revoked", "timestamp": str(now_ms())}
    body, headers = signed(data, secret=SHOP_SECRET)
    assert post(body, headers).status_code == 200
    client = redis_client(redis_url)
    assert AccountState(client, Keys("zns"), clock=lambda: 0).status("shop") is not None
    assert AccountState(client, Keys("zns"), clock=lambda: 0).status("default") is None


def test_daily_quota_change_moves_the_counter_once(post: Post, redis_url: str) -> None:
    # Given our counter: 600 of 1000 left today
    quota = QuotaStore(redis_client(redis_url), Keys("zns"), clock=lambda: now_ms() / 1000)
    quota.set("default", 600, 1000)
    change = {"quota": {"prev_value": "1000", "new_value": "2000"}, "oaId": "oa-1"}
    # When Zalo raises the daily quota to 2000, and says so twice (re-signed, new timestamp)
    first = post(*signed(event("change_oa_daily_quota", **change)))
    data = event("change_oa_daily_quota", **change)
    data["timestamp"] = str(int(data["timestamp"]) + 1)
    second = post(*signed(data))
    # Then what was used stays used: 1600 of 2000 left, not 2600
    assert first.json() == {"result": "accepted"}
    assert second.json() == {"result": "accepted"}
    view = quota.view("default")
    assert (view.remaining, view.daily) == (1600, 2000)


def test_quota_change_without_a_counter_keeps_the_daily_figure(post: Post, redis_url: str) -> None:
    change = {"quota": {"prev_value": 1000, "new_value": 500}}
    assert post(*signed(event("change_oa_daily_quota", **change))).status_code == 200
    view = QuotaStore(redis_client(redis_url), Keys("zns"), clock=lambda: 0).view("default")
    assert (view.remaining, view.daily) == (None, 500)


def test_a_replayed_event_is_a_duplicate_and_stores_nothing(
    post: Post, raw_redis: redis.Redis
) -> None:
    body, headers = signed(event("event_journey_time_out", journey_id="j-1"))
    assert post(body, headers).json() == {"result": "accepted"}
    before = count("event_journey_time_out", "duplicate")
    response = refused(post, raw_redis, body, headers)
    assert response.status_code == 200
    assert response.json() == {"result": "duplicate"}
    assert count("event_journey_time_out", "duplicate") == before + 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-ZEvent-Signature": "mac=" + "0" * 64},
        {"X-ZEvent-Signature": "garbage"},
    ],
)
def test_bad_signature_is_401_and_stores_nothing(
    post: Post, raw_redis: redis.Redis, headers: dict[str, str]
) -> None:
    body, _ = signed(event("permission_revoked"))
    response = refused(post, raw_redis, body, headers)
    assert response.status_code == 401
    assert response.json()["error"] == "bad_signature"


def test_signed_with_another_key_is_401(post: Post, raw_redis: redis.Redis) -> None:
    # The default account verifies with its webhook key, not its app secret.
    body, headers = signed(event("permission_revoked"), secret="app-secret-not-for-webhooks")
    assert refused(post, raw_redis, body, headers).status_code == 401


def test_a_body_changed_after_signing_is_401(post: Post, raw_redis: redis.Redis) -> None:
    body, headers = signed(event("event_journey_time_out", journey_id="j-1"))
    tampered = body.replace(b"j-1", b"j-2")
    assert refused(post, raw_redis, tampered, headers).status_code == 401


@pytest.mark.parametrize("offset_ms", [-601_000, -24 * 3600_000, 61_000, 3600_000])
def test_stale_or_future_timestamp_is_401(
    post: Post, raw_redis: redis.Redis, offset_ms: int
) -> None:
    data = event("permission_revoked")
    data["timestamp"] = str(now_ms() + offset_ms)
    response = refused(post, raw_redis, *signed(data))
    assert response.status_code == 401
    assert response.json()["error"] == "stale"


def test_an_old_but_fresh_enough_event_is_accepted(post: Post) -> None:
    data = event("event_journey_time_out", journey_id="j-9")
    data["timestamp"] = str(now_ms() - 540_000)  # 9 of the 10 minutes allowed
    assert post(*signed(data)).status_code == 200


def test_unknown_event_is_200_ignored_and_stores_nothing(
    post: Post, raw_redis: redis.Redis
) -> None:
    before = count("other", "ignored")
    body, headers = signed(event("user_send_text", message={"text": "hi"}))
    response = refused(post, raw_redis, body, headers)
    assert response.status_code == 200
    assert response.json() == {"result": "ignored"}
    assert count("other", "ignored") == before + 1


def test_unknown_event_with_a_bad_signature_is_still_401(
    post: Post, raw_redis: redis.Redis
) -> None:
    body, _ = signed(event("user_send_text"))
    assert refused(post, raw_redis, body, {"X-ZEvent-Signature": "mac=00"}).status_code == 401


def test_unknown_app_is_403(post: Post, raw_redis: redis.Redis) -> None:
    data = {"app_id": "other", "event_name": "permission_revoked", "timestamp": str(now_ms())}
    response = refused(post, raw_redis, *signed(data, secret="whatever"))
    assert response.status_code == 403
    assert response.json()["error"] == "unknown_app"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        b'["a list"]',
        b'{"app_id": "app-1", "event_name": "permission_revoked"}',
        b"\xff" * 10,
    ],
)
def test_malformed_body_is_400_and_stores_nothing(
    post: Post, raw_redis: redis.Redis, body: bytes
) -> None:
    response = refused(post, raw_redis, body, {"X-ZEvent-Signature": "mac=00"})
    assert response.status_code == 400
    assert response.json()["error"] == "malformed"


def test_a_signed_event_missing_its_fields_is_400(post: Post, raw_redis: redis.Redis) -> None:
    body, headers = signed(event("user_received_message", message={"tracking_id": "t"}))
    response = refused(post, raw_redis, body, headers)
    assert response.status_code == 400
    assert "msg_id" in response.json()["detail"]


def test_oversized_body_is_413_before_it_is_read(post: Post, raw_redis: redis.Redis) -> None:
    data = event("permission_revoked", padding="x" * 5000)  # the test limit is 4096 bytes
    response = refused(post, raw_redis, *signed(data))
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_oversized_chunked_body_is_413(hook_url: str, raw_redis: redis.Redis) -> None:
    def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 1000

    before = snapshot(raw_redis)
    with httpx.Client(timeout=10) as http:
        response = http.post(hook_url, content=chunks())  # no Content-Length: chunked
    assert response.status_code == 413
    assert snapshot(raw_redis) == before


def test_health_and_methods(hook_url: str) -> None:
    base = hook_url.rsplit("/zalo/webhook", 1)[0]
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{base}/healthz").json() == {"status": "ok"}
        assert http.get(hook_url).status_code == 405
        assert http.post(f"{base}/elsewhere", content=b"{}").status_code == 404


def test_answers_never_echo_secrets_or_phones(post: Post) -> None:
    data = event("user_received_message", message={"delivery_time": "84987654321x"})
    data["recipient"] = {"id": "84987654321"}
    for response in (post(*signed(data)), post(*signed(data, secret="hook-secret-x"))):
        assert "84987654321" not in response.text
        assert "hook-secret" not in response.text


def test_app_id_shared_by_two_oas_is_resolved_by_oa_id() -> None:
    from pydantic import SecretStr  # noqa: PLC0415

    from worker.webhooks.directory import AccountDirectory, WebhookAccount  # noqa: PLC0415

    key = SecretStr("k")
    directory = AccountDirectory(
        [WebhookAccount("north", APP_ID, "oa-n", key), WebhookAccount("south", APP_ID, "oa-s", key)]
    )
    assert directory.resolve(APP_ID, "oa-s").name == "south"  # type: ignore[union-attr]
    assert directory.resolve(APP_ID, "oa-x") is None
    assert directory.resolve(APP_ID, None) is None  # ambiguous
    single = AccountDirectory([WebhookAccount("only", APP_ID, "oa-1", key)])
    assert single.resolve(APP_ID, None).name == "only"  # type: ignore[union-attr]
    assert single.resolve(APP_ID, "oa-2") is None  # another OA of the same app
