"""Real parts for integration tests (re-exported from `zns_dev.localrun`, shared with the demo
and the benchmark)."""

from __future__ import annotations

from zns_dev.localrun import (
    REPO,
    SANDBOX_CREDENTIALS,
    RedisServer,
    WorkerProcess,
    free_port,
    free_ports,
    wait_until,
)

__all__ = [
    "REPO",
    "SANDBOX_CREDENTIALS",
    "RedisServer",
    "WorkerProcess",
    "free_port",
    "free_ports",
    "wait_until",
]
