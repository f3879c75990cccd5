"""promtool and prometheus (Debian's `prometheus` package; `make test` installs it where it can).
Missing: the test is skipped with one line, except under CI=true, where it fails (the policy of
tests/rabbitmq.py)."""

from __future__ import annotations

import os
import shutil

import pytest

INSTALL = "apt-get install prometheus (make test does, as root)"


def require_tool(name: str) -> str:
    """The path of `name` (promtool, prometheus); skip, or fail under CI=true, without it."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} not found: {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI needs it)")
        pytest.skip(reason)
    return path
