"""running_sandbox / serve: a real subprocess, the ready line, port 0, clean shutdown."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import pytest

from zns_dev.sandbox import SandboxConfig, SandboxControl, running_sandbox
from zns_dev.sandbox.config import base_url, is_loopback
from zns_dev.sandbox.server import READY_PREFIX, SandboxStartError


def test_running_sandbox_picks_a_free_port_and_stops_on_exit() -> None:
    config = SandboxConfig(port=0, daily_quota=7, app_id="cfg-app", access_token="cfg-token")
    with running_sandbox(config) as url:
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")
        # The config reached the subprocess.
        response = httpx.get(f"{url}/message/quota", headers={"access_token": "cfg-token"})
        assert response.json()["data"]["dailyQuota"] == "7"
        with SandboxControl(url) as control:
            assert set(control.stats().quota) == {"cfg-app"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_sandbox/stats")


def test_a_port_in_use_is_a_start_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(SandboxStartError, match="exited"),
            running_sandbox(SandboxConfig(port=port)),
        ):
            pass  # pragma: no cover - never reached


def test_module_entry_point_prints_the_ready_line_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "zns_dev.sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(READY_PREFIX + "http://127.0.0.1:")
        url = line.removeprefix(READY_PREFIX).strip()
        assert httpx.get(f"{url}/_sandbox/stats").status_code == 200
        # And the next line tells a worker how to use it: the test credentials, pasteable
        settings = dict(part.split("=", 1) for part in process.stdout.readline().split()[2:])
        assert settings["ZNS_API_BASE_URL"] == url and settings["ZNS_APP_ID"] == "sandbox-app"
        assert settings["ZNS_REFRESH_TOKEN"] == "sandbox-refresh-token"
        process.terminate()
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_base_url() -> None:
    assert base_url("127.0.0.1", 8765) == "http://127.0.0.1:8765"
    assert base_url("0.0.0.0", 1) == "http://127.0.0.1:1"
    assert base_url("::1", 2) == "http://[::1]:2"
    assert base_url("::", 3) == "http://[::1]:3"
