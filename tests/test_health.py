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
    verdict = health.check(max_age_s=60, now=1000)
    assert not verdict.healthy and "feeder_at" in verdict.reason  # a dead lane feeder shows
    health.beat("feeder_at", now=1000)
    assert health.check(max_age_s=60, now=1059).healthy
    stale = health.check(max_age_s=60, now=1061)
    assert not stale.healthy and "old" in stale.reason


def test_zns_check_exit_codes(tmp_path: Path, worker_env: dict[str, str]) -> None:
    path = tmp_path / "health.json"
    env = {**worker_env, "ZNS_CELERY__HEALTH_FILE": str(path)}
    runner = CliRunner()
    assert runner.invoke(app, ["check"], env=env).exit_code == 1
    health = HealthFile(path)
    for kind in ("consumer_at", "maintenance_at", "feeder_at"):
        health.beat(kind)
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


def test_a_stale_heartbeat_says_which_file_and_which_process_wrote_it(tmp_path: Path) -> None:
    # Given a heartbeat file left by a worker that is gone (another run, another container)
    path = tmp_path / "h.json"
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    path.write_text(f'{{"consumer_at": 1000, "maintenance_at": 1000, "pid": {gone}}}')
    # When a probe reads it
    verdict = HealthFile(path).check(max_age_s=60, now=1091)
    # Then the answer names the file and the writer, and says the writer is not running
    assert not verdict.healthy
    assert str(path) in verdict.reason and f"pid {gone}, which is not running" in verdict.reason
    # And a live writer is named without that remark
    HealthFile(path).beat("consumer_at", now=0)
    assert "not running" not in HealthFile(path).check(max_age_s=60, now=1091).reason
