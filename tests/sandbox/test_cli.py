"""`zns sandbox` options: mapped onto SandboxConfig; a non-loopback host is refused."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from zns_dev.sandbox import command as cli
from zns_dev.sandbox.config import SandboxConfig

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(cli.sandbox_command)
    return app


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[SandboxConfig]:
    configs: list[SandboxConfig] = []
    monkeypatch.setattr(cli, "serve", configs.append)
    return configs


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "example.com"])
def test_non_loopback_host_is_refused(host: str, served: list[SandboxConfig]) -> None:
    result = runner.invoke(_app(), ["--host", host])
    assert result.exit_code == 2
    assert "--allow-remote" in result.output
    assert served == []


def test_allow_remote_lets_it_bind(served: list[SandboxConfig]) -> None:
    result = runner.invoke(_app(), ["--host", "0.0.0.0", "--allow-remote"])
    assert result.exit_code == 0, result.output
    assert served[0].host == "0.0.0.0"


def test_options_become_the_config(served: list[SandboxConfig]) -> None:
    args = [
        "--port", "0", "--latency-ms", "100", "--oauth-latency-ms", "2000",
        "--daily-quota", "50", "--access-token-ttl-s", "60", "--access-token-max-sends", "3",
        "--night-hours", "--fault-100", "0.1", "--fault-5xx", "0.2", "--fault-429", "0.3",
        "--fault-drop", "0.05", "--fault-drop-after-send", "0.01", "--stall-rate", "0.5",
        "--stall-ms", "250", "--seed", "42", "--fault-endpoint", "send",
        "--fault-endpoint", "get-token",
    ]  # fmt: skip
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    [config] = served
    assert config.model_dump(exclude_defaults=True) == {
        "port": 0,
        "latency_ms": 100,
        "oauth_latency_ms": 2000,
        "daily_quota": 50,
        "access_token_ttl_s": 60,
        "access_token_max_sends": 3,
        "night_hours": True,
        "fault_100": 0.1,
        "fault_5xx": 0.2,
        "fault_429": 0.3,
        "fault_drop": 0.05,
        "fault_drop_after_send": 0.01,
        "stall_rate": 0.5,
        "stall_ms": 250,
        "seed": 42,
        "fault_endpoints": frozenset({"send", "get-token"}),
    }


def test_bad_values_are_usage_errors(served: list[SandboxConfig]) -> None:
    assert runner.invoke(_app(), ["--fault-drop", "1.5"]).exit_code == 2
    assert runner.invoke(_app(), ["--fault-endpoint", "webhook"]).exit_code == 2
    assert served == []


def test_a_port_in_use_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def taken(config: SandboxConfig) -> None:
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(cli, "serve", taken)
    result = runner.invoke(_app(), ["--port", "8765"])
    assert result.exit_code == 1
    assert "cannot listen on 127.0.0.1:8765: Address already in use" in result.output


def test_webhook_options(served: list[SandboxConfig]) -> None:
    args = ["--webhook-url", "http://127.0.0.1:8780/zalo/webhook", "--webhook-delay-ms", "50"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    [config] = served
    assert config.webhook_url == "http://127.0.0.1:8780/zalo/webhook"
    assert config.webhook_delay_ms == 50


def test_a_webhook_url_must_be_http(served: list[SandboxConfig]) -> None:
    assert runner.invoke(_app(), ["--webhook-url", "ftp://x/y"]).exit_code == 2
    assert served == []
