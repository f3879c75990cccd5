"""Run the `zns` command line as an operator would: a fresh process with only the given settings."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import REPO


def run_zns(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`zns ARGS…` with the ZNS_ variables of `env` only (none from this process)."""
    ambient = {k: v for k, v in os.environ.items() if not k.startswith("ZNS_")}
    return subprocess.run(
        [sys.executable, "-m", "worker.ops.cli", *args],
        cwd=REPO,
        env={**ambient, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
