"""`zns webhooks` as operators run it: a real process, its ready line, an event, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import REPO, free_port
from tests.webhooks.conftest import APP_ID, HOOK_SECRET, event, signed
from worker.webhooks.server import READY_PREFIX


def zns_env(redis_url: str, **extra: str) -> dict[str, str]:
    ambient = {k: v for k, v in os.environ.items() if not k.startswith("ZNS_")}
    return {"ZNS_REDIS_URL": redis_url, "ZNS_WEBHOOKS__METRICS_PORT": "0", **ambient, **extra}


@pytest.fixture
def process(redis_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    env = zns_env(redis_url, ZNS_APP_ID=APP_ID, ZNS_WEBHOOK_SECRET_KEY=HOOK_SECRET)
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.ops.cli", "webhooks", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_serves_events_until_sigterm(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith(READY_PREFIX), line
    url = line.removeprefix(READY_PREFIX).strip()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/zalo/webhook")
    response = httpx.post(url, content=signed(event("permission_revoked"))[0], timeout=10)
    assert response.status_code == 401  # unsigned: the headers were left out on purpose
    body, headers = signed(event("permission_revoked"))
    assert httpx.post(url, content=body, headers=headers, timeout=10).status_code == 200
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -15)
    assert process.wait(15) in (0, -signal.SIGTERM)
    output = process.stdout.read()
    assert "webhook refused: bad_signature" in output  # JSON log lines on stderr
    assert '"message": "Finished server process' in output


def test_without_a_signing_key_it_refuses_to_start(redis_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.ops.cli", "webhooks", "--port", "0"],
        cwd=tmp_path,
        env=zns_env(redis_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no account has an app id and a secret key" in result.stderr + result.stdout
    assert REPO.exists()
