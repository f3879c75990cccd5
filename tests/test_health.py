"""Heartbeat file and `zns check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from worker.ops.cli import app
from worker.ops.health import HealthFile


def test_fresh_heartbeats_are_healthy_and_stale_ones_are_not(tmp_path: Path) -> None:
    health = HealthFile(tmp_path / "h.json")
    assert not health.check(max_age_s=60, now=1000).healthy
    health.beat("consumer_at", now=1000)
    verdict = health.check(max_age_s=60, now=1000)
    assert not verdict.healthy and "maintenance_at" in verdict.reason
    health.beat("maintenance_at", now=1000)
    assert health.check(max_age_s=60, now=1059).healthy
    stale = health.check(max_age_s=60, now=1061)
    assert not stale.healthy and "old" in stale.reason


def test_zns_check_exit_codes(tmp_path: Path, worker_env: dict[str, str]) -> None:
    path = tmp_path / "health.json"
    env = {**worker_env, "ZNS_CELERY__HEALTH_FILE": str(path)}
    runner = CliRunner()
    assert runner.invoke(app, ["check"], env=env).exit_code == 1
    health = HealthFile(path)
    health.beat("consumer_at")
    health.beat("maintenance_at")
    assert runner.invoke(app, ["check"], env=env).exit_code == 0
    assert runner.invoke(app, ["check", "--ready"], env=env).exit_code == 0
    down = {**env, "ZNS_REDIS_URL": "redis://127.0.0.1:1/0"}
    result = runner.invoke(app, ["check", "--ready"], env=down)
    assert result.exit_code == 1 and "unreachable" in result.output
    assert runner.invoke(app, ["check"], env={**env, "ZNS_REDIS_URL": "x"}).exit_code == 2


def test_the_probe_loads_no_sandbox_celery_or_stores() -> None:
    # `zns check` runs every 30 s in every pod: its command line must not load the developer
    # tools, Celery, the HTTP client or the state stores
    code = "import sys, worker.ops.cli; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    for heavy in ("aiohttp", "zns_dev", "celery", "httpx", "worker.runtime", "worker.state.keys"):
        assert heavy not in loaded, heavy
