"""Worker start to first send: ours (`zns worker`) against a plain Celery worker (the bench's
naive task, `celery -A zns_dev.naive worker` with Celery's default flags).

Each run gets a fresh sandbox and a fresh private Redis; one step is enqueued before the worker
process is spawned. Measured: from just before the spawn to the sandbox's `sent_time` of the first
message (the moment the send reached Zalo), plus when the worker logged Celery's `ready.`. The two
kinds run alternately (A B A B ...), so drift of this shared machine hits both alike; the report
gives each one's median and the median of the paired differences.

    python -m zns_dev.startup --runs 7 [--latency-ms 0] [--naive-flags plain|bench]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from celery import Celery

from worker.messaging.names import QUEUE, TASK_NAME
from worker.settings import CelerySettings
from zns_dev.localrun import SANDBOX_CREDENTIALS, RedisServer, free_port, wait_until
from zns_dev.naive import NAIVE_QUEUE, NAIVE_TASK
from zns_dev.sandbox.config import SandboxConfig
from zns_dev.sandbox.control import SandboxControl
from zns_dev.sandbox.server import running_sandbox

PHONE = "84912345678"
TEMPLATE_ID = "1001"
#: The flags the bench gives its worker processes (localrun.WorkerProcess); "plain" gives none.
BENCH_FLAGS = ("--without-mingle", "--without-gossip")
#: Threads of both: our shipped default (`zns worker` reads it from the settings).
CONCURRENCY = CelerySettings().concurrency
SEND_TIMEOUT_S = 60.0
POLL_S = 0.02
READY_MARK = " ready."


@dataclass(frozen=True)
class Run:
    """One measured start: seconds from the spawn to Celery's `ready.` and to the first send."""

    kind: str
    ready_s: float | None
    first_send_s: float


def _zns() -> str:
    return str(Path(sys.executable).with_name("zns"))


def worker_argv(kind: str, naive_flags: str) -> list[str]:
    """The command line of one kind: ours as shipped, naive as a plain Celery worker."""
    if kind == "ours":
        return [_zns(), "worker", "-l", "INFO"]
    argv = [sys.executable, "-m", "celery", "-A", "zns_dev.naive", "worker"]
    argv += ["-Q", NAIVE_QUEUE, "-P", "threads", "-c", str(CONCURRENCY), "-l", "INFO"]
    return argv + (list(BENCH_FLAGS) if naive_flags == "bench" else [])


def _env(redis_url: str, sandbox_url: str, workdir: Path) -> dict[str, str]:
    ambient = {k: v for k, v in os.environ.items() if not k.startswith("ZNS_")}
    return {
        **ambient,
        **SANDBOX_CREDENTIALS,
        "ZNS_REDIS_URL": redis_url,
        "ZNS_API_BASE_URL": sandbox_url,
        "ZNS_OAUTH_BASE_URL": sandbox_url,
        "ZNS_CELERY__METRICS_PORT": str(free_port()),
        "ZNS_CELERY__HEALTH_FILE": str(workdir / "health.json"),
        "PYTHONUNBUFFERED": "1",
    }


def _enqueue(kind: str, redis_url: str, sandbox_url: str) -> None:
    """One step on the kind's queue, by name, as a bare `send_task` producer sends it."""
    app = Celery(broker=redis_url)
    kwargs = {"phone": PHONE, "template_id": TEMPLATE_ID, "template_data": {"order": "ORD-1"}}
    if kind == "ours":
        app.send_task(TASK_NAME, kwargs={**kwargs, "journey": "ORD-1"}, queue=QUEUE)
    else:  # the naive task takes a journey token made beforehand (as in the bench)
        access = {"access_token": SANDBOX_CREDENTIALS["ZNS_ACCESS_TOKEN"]}
        with httpx.Client(base_url=sandbox_url, headers=access) as client:
            token = client.post("/journey/get-token", json={"phone": PHONE}).json()["token"]
        kwargs |= {"tracking_id": "startup-1", "journey_token": token}
        app.send_task(NAIVE_TASK, kwargs=kwargs, queue=NAIVE_QUEUE)
    app.close()


class _ReadyWatch:
    """Notes when the worker's log first shows Celery's `ready.` line."""

    def __init__(self, log_path: Path) -> None:
        self._path = log_path
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        while self.at is None and not self._stop.wait(POLL_S):
            if self._path.exists() and READY_MARK in self._path.read_text(errors="replace"):
                self.at = time.time()


@contextlib.contextmanager
def _spawned(argv: list[str], env: dict[str, str], workdir: Path, log_path: Path) -> Iterator[None]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def measure(kind: str, *, latency_ms: int, naive_flags: str, keep_logs: Path | None) -> Run:
    """One fresh start of `kind` ("ours" or "naive") to its first send."""
    config = SandboxConfig(port=0, latency_ms=latency_ms)
    with (
        tempfile.TemporaryDirectory(prefix="zns-startup-") as tmp,
        running_sandbox(config) as url,
        SandboxControl(url) as control,
    ):
        workdir = Path(tmp)
        log_path = (keep_logs or workdir) / f"{kind}-{time.time_ns()}.log"
        redis = RedisServer().start()
        try:
            _enqueue(kind, redis.url, url)
            env = _env(redis.url, url, workdir)
            spawned_at = time.time()
            with (
                _spawned(worker_argv(kind, naive_flags), env, workdir, log_path),
                _ReadyWatch(log_path) as ready,
            ):
                wait_until(
                    lambda: bool(control.messages()),
                    timeout_s=SEND_TIMEOUT_S,
                    interval_s=POLL_S,
                    what=f"the first send of {kind} (log: {log_path})",
                )
                sent_at = control.messages()[0].sent_time_ms / 1000
        finally:
            redis.stop()
    ready_s = None if ready.at is None else ready.at - spawned_at
    return Run(kind, ready_s, sent_at - spawned_at)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(runs: list[Run]) -> str:
    """Per-kind medians and the median of the paired ours - naive differences."""
    lines = []
    by_kind = {kind: [r for r in runs if r.kind == kind] for kind in ("ours", "naive")}
    for kind, rs in by_kind.items():
        if not rs:
            continue
        sends = [r.first_send_s for r in rs]
        ready = [r.ready_s for r in rs if r.ready_s is not None]
        lines.append(
            f"{kind:5}  first send median {_median(sends):.3f} s "
            f"(min {min(sends):.3f}, max {max(sends):.3f}); ready median {_median(ready):.3f} s"
        )
    pairs = zip(by_kind["ours"], by_kind["naive"], strict=False)
    diffs = [o.first_send_s - n.first_send_s for o, n in pairs]
    if diffs:
        lines.append(
            f"ours - naive, paired median: {_median(diffs):+.3f} s over {len(diffs)} pairs"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print every run and the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each kind (default 5)")
    parser.add_argument("--latency-ms", type=int, default=0, help="sandbox latency (default 0)")
    parser.add_argument(
        "--naive-flags",
        choices=("plain", "bench"),
        default="plain",
        help="plain: Celery's defaults (mingle, gossip); bench: the bench's --without-* flags",
    )
    parser.add_argument("--only", choices=("ours", "naive"), help="measure one kind only")
    parser.add_argument("--keep-logs", type=Path, help="write the worker logs to this directory")
    args = parser.parse_args(argv)
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
    kinds = [args.only] if args.only else ["ours", "naive"]
    runs: list[Run] = []
    for i in range(args.runs):
        for kind in kinds:
            run = measure(
                kind,
                latency_ms=args.latency_ms,
                naive_flags=args.naive_flags,
                keep_logs=args.keep_logs,
            )
            ready = "-" if run.ready_s is None else f"{run.ready_s:.3f}"
            print(f"run {i + 1} {kind:5} ready {ready} s, first send {run.first_send_s:.3f} s")
            runs.append(run)
    print(report(runs))


if __name__ == "__main__":
    main()
