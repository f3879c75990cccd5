"""Fixtures of the integration tests: the Node.js toolchain for the producers we did not write."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import NoReturn

import pytest

from tests.support import REPO

NODE_DIR = REPO / "tests" / "node"
LOCKFILE = NODE_DIR / "package-lock.json"
#: Written by npm into node_modules on every install: its age is that of the installed tree.
INSTALLED_MARKER = NODE_DIR / "node_modules" / ".package-lock.json"
NPM_CI_TIMEOUT_S = 300


def _missing_toolchain(reason: str) -> NoReturn:
    """No Node toolchain: a skip on a developer's machine, a failure under CI=true."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the Node producer contract tests must run)")
    pytest.skip(reason)


def _install_needed() -> bool:
    return (
        not INSTALLED_MARKER.exists() or INSTALLED_MARKER.stat().st_mtime < LOCKFILE.stat().st_mtime
    )


@pytest.fixture(scope="session")
def node() -> str:
    """The `node` binary, with tests/node's dependencies installed (`npm ci`, once: when
    node_modules is missing or older than package-lock.json). Without `node` or `npm` the test is
    skipped, except under CI=true, where it fails."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if node_bin is None or npm_bin is None:
        missing = " and ".join(n for n, p in (("node", node_bin), ("npm", npm_bin)) if p is None)
        _missing_toolchain(f"{missing} not installed: the Node producer needs Node.js 18+ and npm")
    if _install_needed():
        try:
            done = subprocess.run(
                [npm_bin, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                encoding="utf-8",
                timeout=NPM_CI_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm ci in {NODE_DIR} took more than {NPM_CI_TIMEOUT_S}s")
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        assert not _install_needed(), "npm ci left node_modules older than package-lock.json"
    return node_bin
