"""A private RabbitMQ node for the chaos scenarios that kill the broker: its own name, ports and
data directory under the test's, so killing it touches nothing else on the machine (the shared
RabbitMQ on 5672 keeps serving the other tests). Started from the machine's `rabbitmq-server`;
missing, the scenario is skipped with one line (failed under CI=true)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import IO

from kombu import Connection

from tests.rabbitmq import unavailable
from tests.support import free_ports, wait_until

START_TIMEOUT_S = 90  # about 4 s here; the first start of a node also creates its schema


class RabbitNode:
    """`rabbitmq-server` on free loopback ports with its data in a directory of its own (the
    server runs as the `rabbitmq` user, who cannot enter pytest's private directories), removed
    by `stop`; guest/guest on "/"."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="zns-rabbitmq-"))
        self.port, self.dist_port = free_ports(2)
        self.name = f"zns{self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> RabbitNode:
        """Start (again, keeping its data) and wait until it accepts AMQP connections."""
        server = shutil.which("rabbitmq-server")
        if server is None:
            unavailable("rabbitmq-server not installed: no private RabbitMQ node to kill")
        self._prepare()
        if self._log is None:
            self._log = (self.workdir / "node.out").open("ab")
        self.process = subprocess.Popen(
            [server], env=self._env(), stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        wait_until(self._answers, timeout_s=START_TIMEOUT_S, interval_s=0.5, what=self.name)
        return self

    def kill(self) -> None:
        """SIGKILL the Erlang VM: a node crash, nothing flushed or closed cleanly."""
        pid = int((self.workdir / "node.pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(30)

    def stop(self) -> None:
        """Stop it for good and remove its data (after the scenario)."""
        if self.process is not None and self.process.poll() is None:
            subprocess.run(["rabbitmqctl", "-q", "-n", self.name, "stop"], check=False, timeout=60)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            tail = (self.workdir / "node.out").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"RabbitMQ node {self.name} exited:\n{tail}")
        try:
            with Connection(self.url, connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1)
        except Exception:  # kombu raises transport-specific errors
            return False
        return True

    def _prepare(self) -> None:
        """Config, an empty plugin list, data and log directories; owned by the `rabbitmq`
        user when we are root (the server script drops to it)."""
        (self.workdir / "mnesia").mkdir(parents=True, exist_ok=True)
        (self.workdir / "log").mkdir(exist_ok=True)
        (self.workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n", encoding="utf-8"
        )
        (self.workdir / "enabled_plugins").write_text("[].\n", encoding="utf-8")
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.workdir)], check=True)

    def _env(self) -> dict[str, str]:
        home = self.workdir
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_PID_FILE": str(home / "node.pid"),
        }
