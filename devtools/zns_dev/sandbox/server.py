"""Run the sandbox: `serve` in this process (blocking), `running_sandbox` in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import IO, Any, Final

from aiohttp import web

from zns_dev.sandbox.app import create_app
from zns_dev.sandbox.config import SandboxConfig, base_url

READY_PREFIX: Final = "zns sandbox listening on "
# wrk opens 200 connections at once; the default backlog of 128 would drop SYNs.
LISTEN_BACKLOG: Final = 1024
# A cold interpreter importing aiohttp and pydantic takes ~1 s; a loaded CI box far more.
STARTUP_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 5.0
# Open connections (keep-alive clients) get this long to finish after SIGTERM.
SHUTDOWN_GRACE_S: Final = 1.0


class SandboxStartError(RuntimeError):
    """The sandbox subprocess exited or stayed silent instead of printing its ready line."""


def serve(config: SandboxConfig) -> None:
    """Serve until SIGINT/SIGTERM, printing the ready line (with the real port) when listening."""
    _run(_serve(config))


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on Windows
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def credentials_line(config: SandboxConfig, url: str) -> str:
    """The settings a worker needs to use this sandbox (well-known test values, not secrets)."""
    settings = {
        "ZNS_API_BASE_URL": url,
        "ZNS_OAUTH_BASE_URL": url,
        "ZNS_APP_ID": config.app_id,
        "ZNS_SECRET_KEY": config.secret_key,
        "ZNS_OA_ID": config.oa_id,
        "ZNS_ACCESS_TOKEN": config.access_token,
        "ZNS_REFRESH_TOKEN": config.refresh_token,
    }
    return "test credentials: " + " ".join(f"{k}={v}" for k, v in settings.items())


async def _serve(config: SandboxConfig) -> None:
    runner = web.AppRunner(create_app(config), access_log=None, handle_signals=False)
    await runner.setup()
    sock = _listen(config.host, config.port)
    site = web.SockSite(runner, sock, backlog=LISTEN_BACKLOG, shutdown_timeout=SHUTDOWN_GRACE_S)
    await site.start()
    url = base_url(config.host, sock.getsockname()[1])
    print(READY_PREFIX + url, flush=True)
    print(credentials_line(config, url), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _listen(host: str, port: int) -> socket.socket:
    """A bound socket, so that port 0 resolves to a real port before we announce it."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.setblocking(False)
    return sock


@contextlib.contextmanager
def running_sandbox(
    config: SandboxConfig | None = None, *, startup_timeout_s: float = STARTUP_TIMEOUT_S
) -> Iterator[str]:
    """Run the sandbox in a subprocess (default: loopback, a free port); yield its base URL."""
    config = config if config is not None else SandboxConfig(port=0)
    process = subprocess.Popen(
        [sys.executable, "-m", "zns_dev.sandbox", "--config-stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    pump = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
    pump.start()
    try:
        process.stdin.write(config.model_dump_json())
        process.stdin.close()
        yield _await_ready(process, lines, startup_timeout_s)
    finally:
        _stop(process)
        pump.join(STOP_TIMEOUT_S)
        process.stdout.close()


def _await_ready(
    process: subprocess.Popen[str], lines: queue.Queue[str | None], timeout_s: float
) -> str:
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            raise SandboxStartError(f"the sandbox exited with code {process.wait()}")
        if line.startswith(READY_PREFIX):
            return line.removeprefix(READY_PREFIX).strip()
    raise SandboxStartError(f"the sandbox did not get ready within {timeout_s} s")


def _pump(stdout: IO[str], lines: queue.Queue[str | None]) -> None:
    """Read the child's stdout to the end so it never blocks on a full pipe."""
    with contextlib.suppress(ValueError, OSError):
        for line in stdout:
            lines.put(line)
    lines.put(None)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
