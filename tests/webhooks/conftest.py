"""A real receiver over HTTP (uvicorn in a thread) on the private Redis; signed-event helpers."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from worker.settings import AccountSettings, Settings, WebhookSettings
from worker.webhooks.server import running_receiver

APP_ID = "app-1"
HOOK_SECRET = "hook-secret"  # the default account's OA secret key for webhooks
SHOP_APP_ID = "app-2"
SHOP_SECRET = "shop-secret"  # the shop account signs with its app secret (no webhook key)


def now_ms() -> int:
    return int(time.time() * 1000)


def signed(
    data: dict[str, Any], *, secret: str = HOOK_SECRET, app_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A body and headers as Zalo sends them (signature computed here, independently)."""
    body = json.dumps(data).encode()
    app = app_id if app_id is not None else str(data.get("app_id", ""))
    digest = hashlib.sha256(
        app.encode() + body + str(data.get("timestamp", "")).encode() + secret.encode()
    ).hexdigest()
    return body, {"X-ZEvent-Signature": f"mac={digest}", "Content-Type": "application/json"}


def event(name: str, **fields: Any) -> dict[str, Any]:
    """An event of the default account, stamped now."""
    return {"app_id": APP_ID, "event_name": name, "timestamp": str(now_ms()), **fields}


@pytest.fixture
def hook_settings(redis_url: str) -> Settings:
    return Settings(
        _env_file=None,
        redis_url=redis_url,
        app_id=APP_ID,
        secret_key=SecretStr("app-secret-not-for-webhooks"),
        webhook_secret_key=SecretStr(HOOK_SECRET),
        accounts={"shop": AccountSettings(app_id=SHOP_APP_ID, secret_key=SecretStr(SHOP_SECRET))},
        webhooks=WebhookSettings(max_age_s=600, max_future_s=60, max_body_bytes=4096),
    )


@pytest.fixture
def hook_url(hook_settings: Settings) -> Iterator[str]:
    with running_receiver(hook_settings) as url:
        yield url


@pytest.fixture
def post(hook_url: str) -> Iterator[Any]:
    with httpx.Client(timeout=10) as http:

        def send(body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
            return http.post(hook_url, content=body, headers=headers or {})

        yield send


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def snapshot(client: redis.Redis) -> dict[bytes, object]:
    """Every key with its serialised value: equal snapshots mean nothing was stored."""
    keys: list[bytes] = client.keys("*")  # type: ignore[assignment]
    return {key: client.dump(key) for key in sorted(keys)}
