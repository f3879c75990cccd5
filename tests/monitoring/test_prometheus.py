"""A real Prometheus scrapes a real worker (and a real webhook receiver) after real traffic
through the sandbox: every query of the Grafana dashboard returns data."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import yaml

from tests.monitoring.dashboard import Query, queries
from tests.monitoring.tools import require_tool
from tests.support import WorkerProcess, free_port, free_ports, wait_until
from tests.webhooks.conftest import APP_ID, HOOK_SECRET, event, signed
from worker.producer import Producer
from worker.runtime import Runtime
from worker.settings import Settings
from worker.webhooks.server import READY_PREFIX
from zns_dev.sandbox.control import SandboxControl

SCRAPE_S = 1
DEADLINE_S = 60  # the whole wait for data; a healthy run needs a few scrapes
PHONE, RETRIED, REFUSED, REFRESHED = "84987654321", "84912345678", "84911111111", "84922222222"


@contextmanager
def prometheus(binary: str, targets: dict[str, str]) -> Iterator[str]:
    """A Prometheus scraping `targets` (job -> host:port) every second; yields its API URL.
    Its data directory and process are gone when the block ends."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="zns-prometheus-") as home:
        config = {
            "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        (Path(home) / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        log = (Path(home) / "prometheus.log").open("w", encoding="utf-8")
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={home}/prometheus.yml",
                f"--storage.tsdb.path={home}/data",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _ready(url), timeout_s=30, what="prometheus ready")
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def query(url: str, expr: str) -> list[object]:
    """The instant result of `expr` (fails on a query error)."""
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[object] = body["data"]["result"]
    return result


@contextmanager
def webhook_receiver(env: dict[str, str], metrics_port: int, cwd: Path) -> Iterator[str]:
    """`zns webhooks` as a process, its metrics on `metrics_port`; yields the webhook URL."""
    ambient = {k: v for k, v in os.environ.items() if not k.startswith("ZNS_")}
    errors = cwd / "webhooks.stderr"
    with errors.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.ops.cli", "webhooks", "--port", "0"],
            cwd=cwd,
            env={**ambient, **env, "ZNS_WEBHOOKS__METRICS_PORT": str(metrics_port)},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(READY_PREFIX), f"{line!r}; stderr: {errors.read_text()[-2000:]}"
        yield line.removeprefix(READY_PREFIX).strip()
    finally:
        proc.terminate()
        proc.wait(15)


def send_traffic(settings: Settings, runtime: Runtime, control: SandboxControl) -> None:
    """Sends, a retry, a refused step (dead letter), a token refresh, then a parked step."""
    control.script(-100, endpoint="send", phone=RETRIED)  # transient: one retry
    control.script(-108, endpoint="send", phone=REFUSED)  # recipient: a dead letter
    control.script(-124, endpoint="send", phone=REFRESHED)  # access token: a refresh
    producer = Producer(settings)
    jobs = [
        {"phone": phone, "template_id": "9", "template_data": {"i": i}, "journey": f"j{i}"}
        for i, phone in enumerate([PHONE, PHONE, RETRIED, REFUSED, REFRESHED])
    ]
    for task_id in producer.enqueue_many(jobs).task_ids:
        producer.app.AsyncResult(task_id).get(timeout=60)
    runtime.accounts.pause("default", reason="monitoring test")
    parked = producer.enqueue(phone=PHONE, template_id="9", template_data={"p": 1})
    assert producer.app.AsyncResult(parked).get(timeout=60)["status"] == "parked"


def test_every_dashboard_query_returns_data(  # noqa: PLR0917 (pytest fixtures)
    settings: Settings,
    runtime: Runtime,
    worker_env: dict[str, str],
    start_worker: Callable[..., WorkerProcess],
    control: SandboxControl,
    tmp_path: Path,
) -> None:
    binary = require_tool("prometheus")
    started = time.monotonic()
    worker_port, hooks_port = free_ports(2)
    start_worker(concurrency=4, ZNS_CELERY__METRICS_PORT=str(worker_port))
    hooks_env = {**worker_env, "ZNS_APP_ID": APP_ID, "ZNS_WEBHOOK_SECRET_KEY": HOOK_SECRET}
    with (
        webhook_receiver(hooks_env, hooks_port, tmp_path) as hook_url,
        prometheus(
            binary,
            {"zns-worker": f"127.0.0.1:{worker_port}", "zns-webhooks": f"127.0.0.1:{hooks_port}"},
        ) as url,
    ):
        # Given real traffic, and a webhook request without its signature
        send_traffic(settings, runtime, control)
        body, _ = signed(event("user_received_message"))
        assert httpx.post(hook_url, content=body, timeout=10).status_code == 401
        # When Prometheus has scraped both for a few seconds
        wait_until(
            lambda: all(
                query(url, f'up{{job="{job}"}} == 1') for job in ("zns-worker", "zns-webhooks")
            ),
            timeout_s=30,
            what="both targets up",
        )
        # Then every panel's every query returns data
        empty: list[Query] = []

        def all_answer() -> bool:
            empty[:] = [q for q in queries() if not query(url, q.concrete())]
            return not empty

        with suppress(TimeoutError):  # the assertion below names what stayed empty
            wait_until(all_answer, timeout_s=DEADLINE_S, interval_s=SCRAPE_S, what="data")
        assert not empty, "queries without data:\n" + "\n".join(map(str, empty))
        assert query(url, 'zns_webhook_events_total{outcome="bad_signature"}')
    assert time.monotonic() - started < 150
