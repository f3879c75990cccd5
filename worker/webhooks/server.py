"""Run the receiver: `serve` for `zns webhooks` (blocking), `running_receiver` in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Final

import uvicorn

from worker.clock import Clock, system_clock
from worker.metrics import serve_metrics
from worker.runtime import Runtime, build_runtime
from worker.settings import Settings, WebhookSettings
from worker.state.step_status import StatusStore
from worker.webhooks.app import create_app
from worker.webhooks.directory import AccountDirectory
from worker.webhooks.receiver import WebhookReceiver, Window
from worker.webhooks.seen import SeenEvents

READY_PREFIX: Final = "zns webhooks listening on "
STARTUP_TIMEOUT_S: Final = 30.0
#: Zalo wants its 200 within ~2 s; a connection left open longer is not Zalo's.
KEEPALIVE_S: Final = 5


def build_receiver(runtime: Runtime, *, clock: Clock = system_clock) -> WebhookReceiver:
    """The receiver over the runtime's stores."""
    settings = runtime.settings
    hooks = settings.webhooks
    return WebhookReceiver(
        directory=AccountDirectory.from_settings(settings),
        seen=SeenEvents(runtime.redis, runtime.keys, ttl_s=hooks.dedupe_ttl_s),
        status=StatusStore(
            runtime.redis,
            runtime.keys,
            clock=clock,
            retention_s=settings.pipeline.idempotency_retention_s,
        ),
        quota=runtime.quota,
        accounts=runtime.accounts,
        window=Window(max_age_s=hooks.max_age_s, max_future_s=hooks.max_future_s),
        clock=clock,
    )


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM, printing the ready line (with the real port) when listening."""
    runtime = build_runtime(settings)
    server, sock = _server(runtime, system_clock)
    serve_metrics(settings.webhooks.metrics_port, address=settings.webhooks.host)
    print(READY_PREFIX + _url(settings, sock), flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        runtime.close()


@contextlib.contextmanager
def running_receiver(settings: Settings, *, clock: Clock = system_clock) -> Iterator[str]:
    """The receiver on a free loopback port in a thread of this process; yields its event URL."""
    runtime = build_runtime(settings.model_copy(update={"webhooks": _loopback(settings)}))
    server, sock = _server(runtime, clock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _await_started(server, thread)
        yield _url(runtime.settings, sock)
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_S)
        sock.close()
        runtime.close()


def _server(runtime: Runtime, clock: Clock) -> tuple[uvicorn.Server, socket.socket]:
    hooks = runtime.settings.webhooks
    app = create_app(
        build_receiver(runtime, clock=clock), path=hooks.path, max_body_bytes=hooks.max_body_bytes
    )
    config = uvicorn.Config(
        app,
        log_config=None,  # our logging (JSON lines) stays in charge
        access_log=False,
        server_header=False,
        timeout_keep_alive=KEEPALIVE_S,
        lifespan="off",
    )
    return uvicorn.Server(config), _listen(hooks.host, hooks.port)


def _loopback(settings: Settings) -> WebhookSettings:
    return settings.webhooks.model_copy(update={"host": "127.0.0.1", "port": 0})


def _listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket, so port 0 resolves to a real port before we announce it."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(512)
    return sock


def _url(settings: Settings, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # noqa: S104 - reaching a wildcard bind, not binding
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{settings.webhooks.path}"


def _await_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not (server.started or not thread.is_alive()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the webhook receiver did not start in {STARTUP_TIMEOUT_S}s")
        time.sleep(0.02)
    if not server.started:
        raise RuntimeError("the webhook receiver stopped during start-up")
