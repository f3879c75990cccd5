"""Settings: ZNS_ prefix, nested delimiter, .env, SecretStr, errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("ZNS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_point_at_real_zalo_and_local_redis() -> None:
    settings = load_settings()
    assert settings.api_base_url == "https://business.openapi.zalo.me"
    assert settings.oauth_base_url == "https://oauth.zaloapp.com"
    assert settings.effective_broker_url == settings.redis_url
    assert settings.token_type == "token_logistics_7"


def test_environment_with_prefix_and_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZNS_REDIS_URL", "redis://10.0.0.1:6380/2")
    monkeypatch.setenv("ZNS_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    monkeypatch.setenv("ZNS_HTTP__READ_TIMEOUT_S", "2.5")
    monkeypatch.setenv("ZNS_TOKEN_TYPE", "token_coach_bus_30")
    settings = load_settings()
    assert settings.redis_url == "redis://10.0.0.1:6380/2"
    assert settings.effective_broker_url.startswith("amqp://")
    assert settings.http.read_timeout_s == 2.5
    assert settings.token_type == "token_coach_bus_30"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ZNS_APP_ID=app-from-dotenv\nZNS_SECRET_KEY=s3cr3t-value\n")
    settings = load_settings()
    assert settings.app_id == "app-from-dotenv"
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "s3cr3t-value"


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZNS_SECRET_KEY", "very-secret-key")
    monkeypatch.setenv("ZNS_ACCESS_TOKEN", "very-secret-access")
    monkeypatch.setenv("ZNS_REFRESH_TOKEN", "very-secret-refresh")
    settings = load_settings()
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "very-secret" not in shown


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ZNS_REDIS_URL", "http://not-redis"),
        ("ZNS_BROKER_URL", "kafka://x"),
        ("ZNS_API_BASE_URL", "business.openapi.zalo.me"),
        ("ZNS_TOKEN_TYPE", "token_taxi_7"),
        ("ZNS_HTTP__CONNECT_TIMEOUT_S", "-1"),
        ("ZNS_KEY_PREFIX", "has spaces"),
    ],
)
def test_misconfiguration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_a_visibility_timeout_shorter_than_a_batch_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A bulk batch may hold its message for the soft limit plus one step (the hard limit)
    monkeypatch.setenv("ZNS_CELERY__SOFT_TIME_LIMIT_S", "100")
    monkeypatch.setenv("ZNS_CELERY__TIME_LIMIT_S", "140")
    monkeypatch.setenv("ZNS_PIPELINE__CLAIM_TTL_S", "150")
    monkeypatch.setenv("ZNS_CELERY__VISIBILITY_TIMEOUT_S", "230")
    with pytest.raises(ConfigError, match="ZNS_CELERY__VISIBILITY_TIMEOUT_S"):
        load_settings()
    monkeypatch.setenv("ZNS_CELERY__VISIBILITY_TIMEOUT_S", "241")
    assert load_settings().celery.visibility_timeout_s == 241


def test_quorum_queues_need_a_rabbitmq_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZNS_CELERY__QUEUE_TYPE", "quorum")
    with pytest.raises(ConfigError, match="ZNS_CELERY__QUEUE_TYPE=quorum needs a RabbitMQ"):
        load_settings()
    monkeypatch.setenv("ZNS_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    assert load_settings().celery.queue_type == "quorum"
    monkeypatch.setenv("ZNS_CELERY__QUEUE_TYPE", "stream")
    with pytest.raises(ConfigError, match="ZNS_CELERY__QUEUE_TYPE"):
        load_settings()


def test_bad_secret_value_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZNS_HTTP__READ_TIMEOUT_S", "secret-looking-garbage")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "secret-looking-garbage" not in str(info.value)


def test_settings_is_the_loaded_type() -> None:
    assert isinstance(load_settings(), Settings)


def test_webhook_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZNS_WEBHOOKS__PORT", "9000")
    monkeypatch.setenv("ZNS_WEBHOOKS__MAX_AGE_S", "300")
    monkeypatch.setenv("ZNS_WEBHOOK_SECRET_KEY", "very-secret-hook-key")
    monkeypatch.setenv("ZNS_OA_ID", "oa-1")
    monkeypatch.setenv("ZNS_ACCOUNTS__SHOP__WEBHOOK_SECRET_KEY", "very-secret-shop-key")
    settings = load_settings()
    assert settings.webhooks.port == 9000
    assert settings.webhooks.host == "127.0.0.1"
    # every timestamp still accepted is still remembered, so no replay slips between the two
    assert settings.webhooks.dedupe_ttl_s > 300 + settings.webhooks.max_future_s
    default = settings.account("default")
    assert default is not None and default.oa_id == "oa-1"
    assert default.webhook_secret_key is not None
    assert default.webhook_secret_key.get_secret_value() == "very-secret-hook-key"
    shown = repr(settings) + settings.model_dump_json()
    assert "very-secret" not in shown


@pytest.mark.parametrize(
    ("name", "value"),
    [("ZNS_WEBHOOKS__PATH", "no-slash"), ("ZNS_WEBHOOKS__MAX_BODY_BYTES", "10")],
)
def test_bad_webhook_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()
