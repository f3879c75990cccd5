"""Virtualenvs beside the project's own for tools that cannot share it (checkov pins old
releases) or must not see it (a producer with nothing of ours): made once per checkout, under
`.venv/side/`, and reused while their requirement is the same."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

SIDE = REPO / ".venv" / "side"
READY = "ready"  # written last: a venv cut short by a timeout is made again


def side_venv(name: str, requirement: str, *, timeout_s: float = 600) -> Path:
    """The `bin/` of a virtualenv holding only `requirement`, made on first use."""
    digest = hashlib.sha256(f"{sys.version}|{requirement}".encode()).hexdigest()[:12]
    venv = SIDE / f"{name}-{digest}"
    if not (venv / READY).exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        installed = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", requirement],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert installed.returncode == 0, (
            f"cannot install {requirement}:\n{installed.stderr[-3000:]}"
        )
        (venv / READY).write_text(requirement, encoding="utf-8")
    return venv / "bin"
