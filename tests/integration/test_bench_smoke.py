"""`zns bench --smoke`: the harness works end to end (CI runs only this small size; speed is
measured by `make bench`, never asserted in a test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from worker.ops.cli import app
from zns_dev.bench import steady_throughput

SCENARIOS = {"raw", "naive", "ours", "ours-send_task", "enqueue", "rate-limit"}


@pytest.mark.integration
@pytest.mark.timeout(400)
def test_the_smoke_run_measures_every_scenario_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--smoke", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    rows = {row["name"]: row for row in results["rows"]}
    assert set(rows) == SCENARIOS
    assert all(row["throughput"] > 0 for row in rows.values())
    assert all(rows[name]["steady"] > 0 for name in ("raw", "naive", "ours", "ours-send_task"))
    # ours: every step sent, with its own figures measured (round trips counted by the workers)
    for name in ("ours", "ours-send_task"):
        assert rows[name]["get_token_calls"] == rows[name]["extra"]["journeys"]
        assert rows[name]["redis_trips_per_msg"] > 0
        assert rows[name]["celery_result_trips_per_msg"] > 0
        assert rows[name]["rss_mb"] > 0
    # each released step is its own message, as each bare send_task step: one result write each
    assert rows["ours"]["celery_result_trips_per_msg"] == pytest.approx(1.0, abs=0.05)
    checks = results["checks"]
    assert checks["get-token calls == journeys"] is True
    assert "ours/naive @100ms, 1 process" in checks and "bulk / apply_async each" in checks
    assert "ours-send_task/naive @100ms, 1 process" in checks
    assert "ours-send_task/naive steady @100ms, 1 process" in checks
    assert checks["rate limit busiest 1 s window"] > 0
    assert "ours/naive" in result.output  # the table and the checks are printed


def test_steady_throughput_leaves_out_the_start_and_the_drain() -> None:
    # 20 sends 1 s apart while journey tokens are made, 70 at 10 ms, then 10 draining slowly
    start = [i * 1000 for i in range(20)]
    steady = [start[-1] + 10 * (i + 1) for i in range(70)]
    drain = [steady[-1] + 500 * (i + 1) for i in range(10)]
    assert steady_throughput(start + steady + drain) == pytest.approx(100, rel=0.05)
    assert steady_throughput([5, 5, 5, 5, 5]) is None  # no time passed: no figure
    assert steady_throughput([]) is None
