"""docker-compose.yml and the Procfile parse and name real `zns` commands.

`docker compose` cannot run here (no Docker engine): the file is read as YAML (merge keys
resolved) and each service's command is parsed by the real `zns` command line.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import assert_zns_command, expand_defaults
from tests.support import REPO
from worker.settings import CelerySettings

COMPOSE = REPO / "docker-compose.yml"
PROCFILE = REPO / "Procfile"
ZNS_SERVICES = ("worker", "flower", "sandbox", "webhooks")
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
DURATION = re.compile(r"^(?:(\d+)m)?(?:(\d+)s)?$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file, parsed."""
    parsed = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(parsed, dict)
    return parsed


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Its services."""
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _seconds(duration: str) -> int:
    match = DURATION.match(duration)
    assert match and duration, duration
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def test_compose_has_redis_worker_flower_sandbox_and_webhooks(services: dict[str, Any]) -> None:
    assert set(services) == {"redis", *ZNS_SERVICES}


@pytest.mark.parametrize("name", ZNS_SERVICES)
def test_each_zns_service_runs_a_real_zns_command(services: dict[str, Any], name: str) -> None:
    service = services[name]
    assert "entrypoint" not in service, "the image's ENTRYPOINT is zns"
    assert service["command"][0] == name
    assert_zns_command(service["command"], f"compose service {name}")
    assert service["build"]["context"] == "."


def test_redis_keeps_its_data(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["command"][0] == "redis-server"
    args = redis["command"]
    assert args[args.index("--appendonly") + 1] == "yes", "the rotated refresh token lives here"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert ":latest" not in redis["image"] and ":" in redis["image"]


def test_the_worker_talks_to_the_sandbox_by_default(services: dict[str, Any]) -> None:
    sandbox = services["sandbox"]["command"]
    port = sandbox[sandbox.index("--port") + 1]
    env = services["worker"]["environment"]
    assert env["ZNS_API_BASE_URL"] == f"http://sandbox:{port}"
    assert env["ZNS_OAUTH_BASE_URL"] == f"http://sandbox:{port}"
    assert env["ZNS_REDIS_URL"].startswith("redis://redis:")
    assert services["worker"]["depends_on"]["sandbox"]["condition"] == "service_healthy"


def test_the_sandbox_reports_deliveries_to_the_receiver(services: dict[str, Any]) -> None:
    sandbox = services["sandbox"]["command"]
    receiver = services["webhooks"]["command"]
    port = receiver[receiver.index("--port") + 1]
    assert sandbox[sandbox.index("--webhook-url") + 1] == f"http://webhooks:{port}/zalo/webhook"
    assert services["webhooks"]["environment"]["ZNS_SECRET_KEY"] == "sandbox-secret"


def test_the_worker_may_finish_its_jobs_on_stop(services: dict[str, Any]) -> None:
    grace = _seconds(services["worker"]["stop_grace_period"])
    assert grace > CelerySettings().time_limit_s


def test_flower_requires_credentials(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert "--no-auth" not in flower["command"]
    auth = flower["environment"]["ZNS_FLOWER_BASIC_AUTH"]
    assert re.fullmatch(r"\$\{ZNS_FLOWER_BASIC_AUTH:\?[^}]+\}", auth), "compose must refuse"
    assert not (set(flower["environment"]) & {"ZNS_ACCESS_TOKEN", "ZNS_REFRESH_TOKEN"})


def test_ports_are_published_on_loopback_only(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_zns_containers_are_locked_down(services: dict[str, Any]) -> None:
    for name in ZNS_SERVICES:
        service = services[name]
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_only_sandbox_credentials_are_written_in_compose(services: dict[str, Any]) -> None:
    env = services["worker"]["environment"]
    for name in ("ZNS_SECRET_KEY", "ZNS_ACCESS_TOKEN", "ZNS_REFRESH_TOKEN"):
        assert env[name].startswith("sandbox-"), f"{name}: only the sandbox's test values here"


# -- Procfile ------------------------------------------------------------------------------------


def _procfile() -> dict[str, str]:
    processes: dict[str, str] = {}
    for line in PROCFILE.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = PROCFILE_LINE.match(line)
        assert match, f"not a Procfile line: {line!r}"
        assert match.group(1) not in processes, f"{match.group(1)} twice"
        processes[match.group(1)] = match.group(2)
    return processes


def test_procfile_has_worker_flower_sandbox_webhooks_and_no_singleton() -> None:
    processes = _procfile()
    assert set(processes) == set(ZNS_SERVICES)
    assert not any("beat" in command for command in processes.values()), (
        "no scheduler singleton: every worker runs the periodic duties itself"
    )


@pytest.mark.parametrize("name", ZNS_SERVICES)
def test_procfile_commands_are_real_zns_commands(name: str) -> None:
    argv = shlex.split(expand_defaults(_procfile()[name]))
    assert argv[0] == "zns"
    assert argv[1] == name
    assert_zns_command(argv[1:], f"Procfile {name}")
