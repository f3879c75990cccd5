"""`zns demo`: the sandbox Zalo, a real worker and a logistics journey set, with a summary.

Starts a private redis-server on a free port (stopped afterwards): a demo never touches a Redis
it did not start, unless told to with `--redis-url` (then it writes its keys there, key prefix
`zns-demo`, queue `zns`, and deletes them afterwards). Never talks to the real Zalo.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.producer import Producer
from worker.runtime import build_runtime
from worker.settings import Settings
from zns_dev.localrun import RedisServer, WorkerProcess
from zns_dev.sandbox.config import SandboxConfig
from zns_dev.sandbox.control import SandboxControl
from zns_dev.sandbox.server import running_sandbox

DEMO_PREFIX = "zns-demo"
CREDENTIALS = {
    "app_id": "sandbox-app",
    "secret_key": "sandbox-secret",
    "access_token": "sandbox-access-token",
    "refresh_token": "sandbox-refresh-token",
}
STEPS = (
    ("1001", "order_confirmed"),
    ("1002", "shipped"),
    ("1003", "delivered"),
)
NAMES = ("Nguyễn Văn An", "Trần Thị Bình", "Lê Hoàng Cường", "Phạm Minh Dũng", "Võ Thu Hà")
BAD_PHONES = ("0123", "+1 415 555 2671", "0243 826 1234")  # garbage, a US number, a landline
NO_ZALO_PHONE = "0909000999"  # the sandbox is told this one has no Zalo account (-118)
WORKER_READY_TIMEOUT_S = 60
DRAIN_TIMEOUT_S = 300


def run_demo(
    *, orders: int, latency_ms: int, console: Console, redis_url: str | None = None
) -> int:
    """Run the demo end to end; returns the process exit code."""
    with contextlib.ExitStack() as stack:
        redis_url = _demo_redis(stack, console, redis_url)
        if redis_url is None:
            return 2
        console.print(f"[bold]Redis[/bold] {redis_url} (prefix {DEMO_PREFIX})")
        config = SandboxConfig(port=0, latency_ms=latency_ms)
        sandbox_url = stack.enter_context(running_sandbox(config))
        console.print(f"[bold]Sandbox Zalo[/bold] {sandbox_url} (latency {latency_ms} ms)")
        settings = _settings(redis_url, sandbox_url)
        stack.callback(_clean_redis, redis_url)
        _clean_redis(redis_url)
        stack.enter_context(_worker(settings, console))
        return _drive(settings, sandbox_url, orders, console)
    return 0


def _drive(settings: Settings, sandbox_url: str, orders: int, console: Console) -> int:
    control = stack_control = SandboxControl(sandbox_url)
    with stack_control:
        control.script(-118, endpoint="send", phone="84" + NO_ZALO_PHONE[1:], times=100)
        jobs = _journey_set(orders)
        started = time.monotonic()
        report = Producer(settings).enqueue_many(jobs, skip_invalid=True)
        console.print(
            f"enqueued {len(report.task_ids)} steps for {orders} orders; "
            f"{len(report.rejected)} rejected by the producer before the queue"
        )
        runtime = build_runtime(settings)
        expected = len(report.task_ids)
        _progress(control, runtime.dead_letters.count, expected, console)
        elapsed = time.monotonic() - started
        _summary(
            control=control,
            runtime=runtime,
            rejected=report.rejected,
            orders=orders,
            elapsed=elapsed,
            console=console,
        )
        ok = control.stats().sends_accepted + runtime.dead_letters.count() == expected
        runtime.close()
    return 0 if ok else 1


def _journey_set(orders: int) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    for n in range(orders):
        phone = _phone(n, orders)
        for template_id, step in STEPS:
            jobs.append(
                {
                    "phone": phone,
                    "template_id": template_id,
                    "journey": f"ORD-2026-{n:05d}",
                    "template_data": {
                        "customer_name": NAMES[n % len(NAMES)],
                        "order_code": f"ORD-2026-{n:05d}",
                        "status": step,
                        "amount": 150_000 + 1_000 * n,
                    },
                }
            )
    return jobs


def _phone(n: int, orders: int) -> str:
    if n < len(BAD_PHONES) and orders > len(BAD_PHONES) + 2:
        return BAD_PHONES[n]
    if n == len(BAD_PHONES) and orders > len(BAD_PHONES) + 2:
        return NO_ZALO_PHONE
    return f"09{12_000_000 + n:08d}"


def _progress(control: SandboxControl, dead: Any, expected: int, console: Console) -> None:
    columns = [
        TextColumn("[bold]sending[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    ]
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("send", total=expected, detail="")
        while time.monotonic() < deadline:
            sent, dead_letters = control.stats().sends_accepted, int(dead())
            detail = f"sent {sent}, dead letters {dead_letters}"
            progress.update(bar, completed=sent + dead_letters, detail=detail)
            if sent + dead_letters >= expected:
                return
            time.sleep(0.2)


def _summary(
    *,
    control: SandboxControl,
    runtime: Any,
    rejected: list[tuple[int, str]],
    orders: int,
    elapsed: float,
    console: Console,
) -> None:
    stats = control.stats()
    quota = runtime.quota.view("default")
    zalo_quota = next(iter(stats.quota.values()))
    table = Table(title="zns demo summary", show_header=False)
    table.add_row("orders (journeys)", str(orders))
    table.add_row("rejected by the producer", str(len(rejected)))
    table.add_row("messages sent", str(stats.sends_accepted))
    journeys = len({m.journey_id for m in control.messages()})
    table.add_row("journeys that reached Zalo", str(journeys))
    table.add_row("journey tokens created", _tokens_row(stats.journey_tokens_created, journeys))
    table.add_row("dead letters", str(runtime.dead_letters.count()))
    table.add_row("quota left (ours / Zalo's)", f"{quota.remaining} / {zalo_quota.remaining_quota}")
    table.add_row(
        "time", f"{elapsed:.1f} s ({stats.sends_accepted / max(elapsed, 1e-9):.0f} msg/s)"
    )
    console.print(table)
    why = Counter(f"producer: {reason}" for _, reason in rejected)
    why.update(f"dead letter: {entry.reason}" for entry in runtime.dead_letters.entries(limit=500))
    reasons = Table("not sent, and why", "steps")
    for reason, count in why.most_common():
        reasons.add_row(reason, str(count))
    console.print(reasons)


def _settings(redis_url: str, sandbox_url: str) -> Settings:
    return Settings(
        _env_file=None,
        redis_url=redis_url,
        key_prefix=DEMO_PREFIX,
        api_base_url=sandbox_url,
        oauth_base_url=sandbox_url,
        app_id=CREDENTIALS["app_id"],
        secret_key=CREDENTIALS["secret_key"],
        access_token=CREDENTIALS["access_token"],
        refresh_token=CREDENTIALS["refresh_token"],
    )


def _worker_env(settings: Settings) -> dict[str, str]:
    return {
        "ZNS_REDIS_URL": settings.redis_url,
        "ZNS_KEY_PREFIX": DEMO_PREFIX,
        "ZNS_API_BASE_URL": settings.api_base_url,
        "ZNS_OAUTH_BASE_URL": settings.oauth_base_url,
        **{f"ZNS_{k.upper()}": v for k, v in CREDENTIALS.items()},
        "ZNS_CELERY__CONCURRENCY": "32",
    }


@contextlib.contextmanager
def _worker(settings: Settings, console: Console) -> Iterator[None]:
    log = Path(tempfile.mkstemp(prefix="zns-demo-worker-", suffix=".log")[1])
    worker = WorkerProcess(_worker_env(settings), log, concurrency=32, name="demo")
    try:
        worker.start(ready_timeout_s=WORKER_READY_TIMEOUT_S)
        console.print(f"[bold]Worker[/bold] pid {worker.pid} (log {log})")
        yield
    finally:
        worker.stop()


def _demo_redis(stack: contextlib.ExitStack, console: Console, given: str | None) -> str | None:
    """The Redis the demo uses: `given` (it must answer), else a private redis-server."""
    if given is not None:
        if _answers(given):
            return given
        console.print(f"[red]No Redis answers at {given}.[/red]")
        return None
    if shutil.which("redis-server") is None:
        console.print(
            "[red]The demo starts a private redis-server, and none is installed.[/red]\n"
            "Install one (Debian/Ubuntu: apt-get install redis-server; macOS: brew install "
            "redis), or give a Redis the demo may write to with --redis-url."
        )
        return None
    server = RedisServer().start()
    stack.callback(server.stop)
    console.print("(a private redis-server, stopped at the end)")
    return server.url


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _clean_redis(url: str) -> None:
    """Remove what the demo wrote (its prefix, its queue, its results) from the demo database."""
    client = redis.Redis.from_url(url)
    try:
        for pattern in (f"{DEMO_PREFIX}:*", "celery-task-meta-*", "_kombu.*", "unacked*"):
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)
        client.delete("zns")
    except redis.RedisError:
        pass
    finally:
        client.close()


def _tokens_row(created: int, used: int) -> str:
    """Tokens made, and why some never carried a message (Zalo bills a token with its first)."""
    unused = created - used
    if unused <= 0:
        return str(created)
    return (
        f"{created} ({unused} never used: its first send was refused, e.g. no Zalo account; "
        "Zalo bills a token only with its first message)"
    )
