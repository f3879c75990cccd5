"""Local processes for the demo, the benchmark and the tests: a private redis-server, real Celery
worker processes, a free port, and polling until something holds."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import redis

REPO = Path(__file__).resolve().parents[2]  # the source checkout: where `tasks/` lives
#: The sandbox's default OA, as worker environment variables.
SANDBOX_CREDENTIALS = {
    "ZNS_APP_ID": "sandbox-app",
    "ZNS_SECRET_KEY": "sandbox-secret",
    "ZNS_ACCESS_TOKEN": "sandbox-access-token",
    "ZNS_REFRESH_TOKEN": "sandbox-refresh-token",
}


def free_port() -> int:
    """A TCP port free on loopback right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on loopback right now (held together while chosen, so two
    calls in a row cannot hand out the same port)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def wait_until(
    predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.1, what: str = ""
) -> None:
    """Poll until `predicate()` holds, or fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what or predicate}")


class RedisServer:
    """A private redis-server on a free port (never the shared one), stopped on exit."""

    def __init__(self, *, appendonly: bool = False, workdir: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "yes" if appendonly else "no", "--daemonize", "no"]
        if workdir is not None:
            args += ["--dir", str(workdir)]
        self._args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        """Start and wait until it answers PING."""
        self.process = subprocess.Popen(self._args, stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), timeout_s=10, what="private redis-server")
        client.close()
        return self

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


class WorkerProcess:
    """A real `celery -A <app> worker` process (default: ours, on queue `zns`), logs in a file."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        concurrency: int = 16,
        name: str = "w",
        app: str = "tasks.app",
        queue: str = "zns",
    ) -> None:
        ambient = {k: v for k, v in os.environ.items() if not k.startswith("ZNS_")}
        self.env = {**ambient, **env, "PYTHONUNBUFFERED": "1"}  # only the ZNS_ settings given
        self.log_path = log_path
        self.args = [
            sys.executable, "-m", "celery", "-A", app, "worker",
            "-Q", queue, "-P", "threads", "-c", str(concurrency),
            "-n", f"{name}-{free_port()}@%h", "-l", "INFO",
            "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, *, ready_timeout_s: float = 60) -> WorkerProcess:
        """Start and wait for Celery's `ready.` line."""
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        wait_until(self._ready, timeout_s=ready_timeout_s, interval_s=0.2, what="worker ready")
        return self

    @property
    def pid(self) -> int | None:
        """The process id, once started."""
        return self.process.pid if self.process is not None else None

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{self.log()[-4000:]}")
        return " ready." in self.log()

    def log(self) -> str:
        """Everything the worker printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the worker dies with jobs in hand."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM (warm shutdown), then SIGKILL if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log is not None:
            self._log.close()
