"""Real parts for integration tests (re-exported from `worker.localrun`, shared with the demo
and the benchmark)."""

from __future__ import annotations

from worker.localrun import (
    REPO,
    SANDBOX_CREDENTIALS,
    RedisServer,
    WorkerProcess,
    free_port,
    wait_until,
)

__all__ = ["REPO", "SANDBOX_CREDENTIALS", "RedisServer", "WorkerProcess", "free_port", "wait_until"]
