"""`zns bench`: throughput of the full pipeline against its ceiling and a naive baseline, side by
side in one run on one machine (this one is noisy, so only ratios within a run mean much).

    raw    a plain httpx loop at the same concurrency, one client per thread (the ceiling)
    naive  a minimal Celery task posting with one shared client (devtools/zns_dev/naive.py)
    ours   the full pipeline: idempotency, token reuse, quota and rate gates

Each scenario gets a fresh sandbox (at 0 or 100 ms latency), fresh private Redis servers (broker
and state apart, so state commands per message can be counted) and fresh worker processes.
Also measured: bulk enqueue vs one apply_async per job, and the global rate limit across pods.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from worker.job import derive_tracking_id
from worker.messaging.celery_app import publish_step
from worker.messaging.names import QUEUE, TASK_NAME
from worker.producer import Producer
from worker.settings import DEFAULT_STEPS_PER_MESSAGE, PipelineSettings, Settings
from zns_dev.localrun import SANDBOX_CREDENTIALS, RedisServer, WorkerProcess, free_port, wait_until
from zns_dev.sandbox.config import SandboxConfig
from zns_dev.sandbox.control import SandboxControl
from zns_dev.sandbox.server import running_sandbox

THREADS_PER_PROCESS = 200
#: Alternating bulk / one-by-one rounds in the enqueue comparison (median of the ratios).
ENQUEUE_ROUNDS = 5
RATE_PER_S = 50
ACCESS = SANDBOX_CREDENTIALS["ZNS_ACCESS_TOKEN"]
#: The result writes' round trips (worker/messaging/result_backend.py), apart from ours.
RESULT_TRIPS = "zns_result_round_trips"
NAIVE_APP, NAIVE_Q, NAIVE_TASK = "zns_dev.naive", "zns-naive", "bench.naive_send"


@dataclass(frozen=True)
class Size:
    """How big a run is."""

    steps: int
    journeys: int
    latencies_ms: tuple[int, ...]
    processes: tuple[int, ...]
    enqueue_jobs: int
    rate_backlog: int


STEADY = (0.3, 0.9)
FULL = Size(5000, 1000, (0, 100), (1, 2), 5000, 600)
SMOKE = Size(300, 60, (100,), (1,), 1000, 150)


@dataclass
class Row:
    """One measured scenario."""

    name: str
    latency_ms: int
    processes: int
    steps: int
    seconds: float
    throughput: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    redis_trips_per_msg: float | None = None  # ours, counted by the workers themselves
    celery_result_trips_per_msg: float | None = None  # task-result writes (a batch: one)
    zalo_calls_per_msg: float | None = None
    get_token_calls: int | None = None
    rss_mb: float | None = None
    steady: float | None = None  # msg/s between the 30th and the 90th percentile of sends
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """Where and how big one measured run is."""

    url: str
    control: SandboxControl
    size: Size
    processes: int
    latency_ms: int
    workdir: Path


def make_steps(steps: int, journeys: int) -> list[dict[str, Any]]:
    """`steps` journey steps spread over `journeys` customers."""
    return [
        {
            "phone": _phone(i % journeys),
            "template_id": "1001",
            "template_data": {"order_code": f"ORD-{i % journeys:06d}", "step": i // journeys},
            "journey": f"ORD-{i % journeys:06d}",
            "idempotency_key": f"bench-{i}",
        }
        for i in range(steps)
    ]


def _phone(n: int) -> str:
    return f"8491{n:07d}"


# -- environment ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _sandbox(latency_ms: int) -> Iterator[tuple[str, SandboxControl]]:
    config = SandboxConfig(port=0, latency_ms=latency_ms, daily_quota=100_000_000)
    with running_sandbox(config) as url, SandboxControl(url) as control:
        yield url, control


@contextlib.contextmanager
def _redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def _workers(
    sc: Scenario, env: dict[str, str], *, app: str = "tasks.app", queue: str = "zns"
) -> Iterator[list[WorkerProcess]]:
    workers = [
        WorkerProcess(
            {**env, "ZNS_CELERY__METRICS_PORT": str(free_port())},
            sc.workdir / f"{queue}-{i}.log",
            concurrency=THREADS_PER_PROCESS,
            name=f"bench{i}",
            app=app,
            queue=queue,
        )
        for i in range(sc.processes)
    ]
    try:
        for worker in workers:
            worker.start()
            port = worker.env["ZNS_CELERY__METRICS_PORT"]
            if app == "tasks.app":  # /metrics starts right after Celery's "ready"
                wait_until(lambda: _answers(port), timeout_s=30, what="worker /metrics")  # noqa: B023
        yield workers
    finally:
        for worker in workers:
            worker.stop()


class RssSampler:
    """Highest resident memory of some processes, sampled twice a second."""

    def __init__(self, pids: list[int]) -> None:
        self._pids = pids
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for pid in self._pids:
                self.peak_kb = max(self.peak_kb, _rss_kb(pid))


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _worker_env(state_url: str, broker_url: str, sandbox_url: str) -> dict[str, str]:
    return {
        "ZNS_REDIS_URL": state_url,
        "ZNS_BROKER_URL": broker_url,
        "ZNS_API_BASE_URL": sandbox_url,
        "ZNS_OAUTH_BASE_URL": sandbox_url,
        **SANDBOX_CREDENTIALS,
        "ZNS_CELERY__CONCURRENCY": str(THREADS_PER_PROCESS),
        "ZNS_LOG_LEVEL": "WARNING",
    }


def _journey_tokens(url: str, journeys: int) -> dict[str, str]:
    """One journey token per customer, made before the clock starts (raw and naive only)."""
    with httpx.Client(base_url=url, headers={"access_token": ACCESS}) as client:
        return {
            _phone(j): client.post("/journey/get-token", json={"phone": _phone(j)}).json()["token"]
            for j in range(journeys)
        }


def _wait_sent(control: SandboxControl, count: int, timeout_s: float = 900) -> None:
    wait_until(lambda: control.stats().sends_accepted >= count, timeout_s=timeout_s, interval_s=0.2)


def _sent_latencies(control: SandboxControl, enqueued_at: dict[str, float]) -> list[float]:
    return [
        m.sent_time_ms - enqueued_at[m.tracking_id] * 1000
        for m in control.messages()
        if m.tracking_id in enqueued_at
    ]


# -- scenarios -----------------------------------------------------------------------------------


def bench_raw(sc: Scenario) -> Row:
    """The ceiling: threads posting directly, one client per thread."""
    tokens = _journey_tokens(sc.url, sc.size.journeys)
    local = threading.local()
    steps = make_steps(sc.size.steps, sc.size.journeys)

    def post(step: dict[str, Any]) -> float:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=sc.url, timeout=30)
        started = time.perf_counter()
        client.post(
            "/message/template",
            headers={"access_token": ACCESS, "journey_token": tokens[step["phone"]]},
            json=_payload(step),
        )
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS_PER_PROCESS * sc.processes) as pool:
        latencies = list(pool.map(post, steps))
    seconds = time.perf_counter() - started
    return _row("raw", sc, seconds, latencies, zalo_calls_per_msg=1.0)


def _payload(step: dict[str, Any]) -> dict[str, Any]:
    keep = ("phone", "template_id", "template_data")
    return {**{k: step[k] for k in keep}, "tracking_id": step["idempotency_key"]}


def _row(name: str, sc: Scenario, seconds: float, latencies: list[float], **values: Any) -> Row:
    steps = sc.size.steps
    return Row(
        name, sc.latency_ms, sc.processes, steps, seconds, steps / seconds,
        _percentile(latencies, 0.5), _percentile(latencies, 0.99), **values,
    )  # fmt: skip


def bench_naive(sc: Scenario) -> Row:
    """The afternoon design: a minimal task, one shared client, tokens made beforehand."""
    tokens = _journey_tokens(sc.url, sc.size.journeys)
    steps = make_steps(sc.size.steps, sc.size.journeys)
    enqueued_at: dict[str, float] = {}
    with (
        _redis() as broker,
        _workers(
            sc, _worker_env(broker.url, broker.url, sc.url), app=NAIVE_APP, queue=NAIVE_Q
        ) as ws,
        RssSampler([w.pid for w in ws if w.pid]) as rss,
    ):
        app = Celery(broker=broker.url)
        started = time.perf_counter()
        with app.producer_or_acquire() as producer, producer.batch(1000):
            for step in steps:
                enqueued_at[step["idempotency_key"]] = time.time()
                kwargs = {**_payload(step), "journey_token": tokens[step["phone"]]}
                app.send_task(NAIVE_TASK, kwargs=kwargs, queue=NAIVE_Q, producer=producer)
        _wait_sent(sc.control, len(steps))
        seconds = time.perf_counter() - started
    latencies = _sent_latencies(sc.control, enqueued_at)
    return _row("naive", sc, seconds, latencies, zalo_calls_per_msg=1.0, rss_mb=rss.peak_kb / 1024)


def bench_ours(
    sc: Scenario, *, extra_env: dict[str, str] | None = None, steps_per_message: int | None = None
) -> Row:
    """The full pipeline, enqueued with the bulk API (`steps_per_message`: the setting's default
    of 10, or as given)."""
    steps = make_steps(sc.size.steps, sc.size.journeys)
    enqueued_at: dict[str, float] = {}
    with _redis() as state, _redis() as broker:
        env = {**_worker_env(state.url, broker.url, sc.url), **(extra_env or {})}
        per_message = steps_per_message or DEFAULT_STEPS_PER_MESSAGE
        pipeline = PipelineSettings(steps_per_message=per_message)
        settings = Settings(
            _env_file=None, redis_url=state.url, broker_url=broker.url, pipeline=pipeline
        )
        producer = Producer(settings)
        with _workers(sc, env) as workers, RssSampler([w.pid for w in workers if w.pid]) as rss:
            trips_before = _round_trips(workers)
            results_before = _round_trips(workers, RESULT_TRIPS)
            started = time.perf_counter()
            for chunk in range(0, len(steps), 1000):
                batch = steps[chunk : chunk + 1000]
                now = time.time()
                producer.enqueue_many(batch)
                enqueued_at.update((_tracking_id(step), now) for step in batch)
            _wait_sent(sc.control, len(steps))
            seconds = time.perf_counter() - started
            trips = _round_trips(workers) - trips_before
            results = _round_trips(workers, RESULT_TRIPS) - results_before
    stats = sc.control.stats()
    return _row(
        "ours" if steps_per_message is None else f"ours-{steps_per_message}/msg",
        sc, seconds, _sent_latencies(sc.control, enqueued_at),
        redis_trips_per_msg=trips / len(steps),
        celery_result_trips_per_msg=results / len(steps),
        zalo_calls_per_msg=sum(stats.calls.values()) / len(steps),
        get_token_calls=stats.calls.get("get-token", 0),
        rss_mb=rss.peak_kb / 1024,
        extra={"journeys": sc.size.journeys},
    )  # fmt: skip


def _tracking_id(step: dict[str, Any]) -> str:
    return derive_tracking_id(step["idempotency_key"])


def _answers(port: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200  # noqa: PLR2004
    except httpx.TransportError:
        return False


def _round_trips(workers: list[WorkerProcess], family_name: str = "zns_redis_round_trips") -> float:
    """Sum of a counter (default `zns_redis_round_trips_total`) over the workers' /metrics."""
    total = 0.0
    for worker in workers:
        port = worker.env["ZNS_CELERY__METRICS_PORT"]
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            if family.name == family_name:
                total += sum(
                    sample.value for sample in family.samples if sample.name.endswith("_total")
                )
    return total


def bench_enqueue(size: Size) -> Row:
    """Bulk enqueue (with its status records) vs one plain apply_async per job (both validate
    every job; the baseline writes no status). Alternated over `ENQUEUE_ROUNDS` rounds on fresh
    steps, the median of the per-round ratios: one round lasts well under a second, where this
    machine's noise alone moves a single ratio by 2x."""
    steps = make_steps(size.enqueue_jobs * ENQUEUE_ROUNDS, size.journeys * ENQUEUE_ROUNDS)
    per_round = size.enqueue_jobs
    bulk_rates: list[float] = []
    each_rates: list[float] = []
    with _redis() as server:
        producer = Producer(Settings(_env_file=None, redis_url=server.url))
        for r in range(ENQUEUE_ROUNDS):
            chunk = steps[r * per_round : (r + 1) * per_round]
            bulk_rates.append(_bulk_rate(producer, chunk))
            each_rates.append(_each_rate(producer, chunk[: max(1, len(chunk) // 5)]))
    ratios = [bulk / each for bulk, each in zip(bulk_rates, each_rates, strict=True)]
    bulk = statistics.median(bulk_rates)
    return Row("enqueue", 0, 0, per_round, per_round / bulk, bulk,
               extra={"apply_async_each_per_s": statistics.median(each_rates),
                      "bulk_vs_each": statistics.median(ratios),
                      "bulk_vs_each_rounds": [round(x, 1) for x in ratios]})  # fmt: skip


def _bulk_rate(producer: Producer, steps: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    producer.enqueue_many(steps)
    return len(steps) / (time.perf_counter() - started)


def _each_rate(producer: Producer, steps: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for step in steps:  # what a producer without the bulk API does: apply_async per job
        publish_step(producer.app, Producer.validate(step).kwargs())
    return len(steps) / (time.perf_counter() - started)


def bench_rate_limit(size: Size, workdir: Path) -> Row:
    """A global 50/s across 3 worker processes with a backlog: the busiest 1-second window."""
    rate_size = Size(size.rate_backlog, size.rate_backlog, (0,), (3,), 0, 0)
    with _sandbox(0) as (url, control):
        sc = Scenario(url, control, rate_size, 3, 0, workdir)
        row = bench_ours(sc, extra_env={"ZNS_RATE_PER_S": str(RATE_PER_S)})
        times = sorted(m.sent_time_ms for m in control.messages())
    busiest = _busiest_window(times, 1000)
    average = (len(times) - 1) / max((times[-1] - times[0]) / 1000, 1e-9)
    row.name = "rate-limit"
    row.extra = {"limit_per_s": RATE_PER_S, "busiest_1s_window": busiest, "average_per_s": average}
    return row


def _busiest_window(times_ms: list[int], width_ms: int) -> int:
    busiest, start = 0, 0
    for end, at in enumerate(times_ms):
        while at - times_ms[start] >= width_ms:
            start += 1
        busiest = max(busiest, end - start + 1)
    return busiest


# -- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Focus:
    """Which parts of a run to do (iterating on one case); the default is everything."""

    latency_ms: int | None = None  # only the raw/naive/ours triples at this latency
    processes: int | None = None  # only the triples with this many worker processes
    triples: bool = True
    enqueue: bool = True
    rate_limit: bool = True
    fairness: bool = True


def run_bench(
    *, smoke: bool, out: Path, console: Console, focus: Focus | None = None
) -> dict[str, Any]:
    """Run every scenario (or those in `focus`), print one table, write JSON; returns results."""
    size = SMOKE if smoke else FULL
    focus = focus or Focus()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="zns-bench-") as tmp:
        workdir = Path(tmp)
        for latency, processes in _cases(size, focus):
            rows += _triple(size, processes, latency, workdir, console)
        if focus.enqueue:
            rows.append(_announce(console, "enqueue", lambda: bench_enqueue(size)))
        if focus.rate_limit:
            rows.append(_announce(console, "rate limit", lambda: bench_rate_limit(size, workdir)))
        if focus.fairness and not smoke:
            from zns_dev.fairness import SCENARIOS, bench_fairness  # noqa: PLC0415 (it imports us)

            for scenario in SCENARIOS:
                label = f"fairness: {scenario}"
                rows.append(_announce(console, label, lambda: bench_fairness(workdir, scenario)))  # noqa: B023
    checks = _checks(rows)
    results = {"size": asdict(size), "rows": [asdict(row) for row in rows], "checks": checks}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    console.print(_table(rows))
    for name, value in checks.items():
        console.print(f"{name}: {value}")
    console.print(f"written to {out}")
    return results


def _cases(size: Size, focus: Focus) -> list[tuple[int, int]]:
    if not focus.triples:
        return []
    return [
        (latency, processes)
        for latency in size.latencies_ms
        for processes in size.processes
        if focus.latency_ms in (None, latency) and focus.processes in (None, processes)
    ]


def _triple(size: Size, processes: int, latency: int, workdir: Path, console: Console) -> list[Row]:
    """raw, naive, ours and ours with one step per message, each against a fresh sandbox at the
    same latency."""
    rows = []
    for bench in (bench_raw, bench_naive, bench_ours, bench_ours_single):
        with _sandbox(latency) as (url, control):
            sc = Scenario(url, control, size, processes, latency, workdir)
            label = (
                f"{bench.__name__.removeprefix('bench_')} @ {latency} ms, {processes} process(es)"
            )
            row = _announce(console, label, lambda: bench(sc))  # noqa: B023
            row.steady = steady_throughput(sorted(m.sent_time_ms for m in control.messages()))
            rows.append(row)
    return rows


def steady_throughput(sent_ms: list[int], window: tuple[float, float] = STEADY) -> float | None:
    """Sends per second between two percentiles of the send times: past the first step of every
    journey (20% of the steps, the ones that wait for a journey token) and before the drain, where
    threads run out of work."""
    lo, hi = (int(len(sent_ms) * edge) for edge in window)
    if hi <= lo or sent_ms[hi - 1] <= sent_ms[lo]:
        return None
    return (hi - 1 - lo) / ((sent_ms[hi - 1] - sent_ms[lo]) / 1000)


def bench_ours_single(sc: Scenario) -> Row:
    """The full pipeline fed by a bare `send_task` producer (nothing of ours: one message per
    step on queue `zns`, no status records), workers on their shipped defaults."""
    steps = make_steps(sc.size.steps, sc.size.journeys)
    enqueued_at: dict[str, float] = {}
    with _redis() as state, _redis() as broker:
        env = _worker_env(state.url, broker.url, sc.url)
        with _workers(sc, env) as workers, RssSampler([w.pid for w in workers if w.pid]) as rss:
            trips_before = _round_trips(workers)
            results_before = _round_trips(workers, RESULT_TRIPS)
            app = Celery(broker=broker.url)
            started = time.perf_counter()
            with app.producer_or_acquire() as producer, producer.batch(1000):
                for step in steps:
                    enqueued_at[_tracking_id(step)] = time.time()
                    app.send_task(TASK_NAME, kwargs=step, queue=QUEUE, producer=producer)
            _wait_sent(sc.control, len(steps))
            seconds = time.perf_counter() - started
            trips = _round_trips(workers) - trips_before
            results = _round_trips(workers, RESULT_TRIPS) - results_before
    stats = sc.control.stats()
    return _row(
        "ours-send_task", sc, seconds, _sent_latencies(sc.control, enqueued_at),
        redis_trips_per_msg=trips / len(steps),
        celery_result_trips_per_msg=results / len(steps),
        zalo_calls_per_msg=sum(stats.calls.values()) / len(steps),
        get_token_calls=stats.calls.get("get-token", 0),
        rss_mb=rss.peak_kb / 1024,
        extra={"journeys": sc.size.journeys},
    )  # fmt: skip


def _announce(console: Console, label: str, run: Callable[[], Row]) -> Row:
    with console.status(f"bench: {label}"):
        row = run()
    console.print(f"done: {label}: {row.throughput:,.0f}/s")
    return row


def _checks(rows: list[Row]) -> dict[str, Any]:
    def find(name: str, latency: int, processes: int) -> Row | None:
        return next(
            (r for r in rows if (r.name, r.latency_ms, r.processes) == (name, latency, processes)),
            None,
        )

    checks: dict[str, Any] = _ratios(find("naive", 100, 1), find("raw", 100, 1), find)
    ours_rows = [r for r in rows if r.name.startswith("ours")]
    if ours_rows:
        checks["max Redis round trips per message (ours)"] = round(
            max(r.redis_trips_per_msg or 0 for r in ours_rows), 2
        )
        checks["get-token calls == journeys"] = all(
            r.get_token_calls == r.extra.get("journeys") for r in ours_rows
        )
        checks["max worker RSS MB"] = round(max(r.rss_mb or 0 for r in ours_rows), 1)
    for row in rows:
        if row.name == "enqueue":
            checks["bulk / apply_async each"] = round(row.extra["bulk_vs_each"], 1)
        if row.name == "rate-limit":
            checks["rate limit busiest 1 s window"] = row.extra["busiest_1s_window"]
            checks["rate limit average per s"] = round(row.extra["average_per_s"], 1)
        if row.name.startswith("fairness-"):
            checks[row.name] = row.extra
    return checks


def _ratios(
    naive: Row | None, raw: Row | None, find: Callable[[str, int, int], Row | None]
) -> dict[str, Any]:
    """Each `ours` row against naive and raw at 100 ms, 1 process: over the whole run and in
    steady state (`steady_throughput`)."""
    ratios: dict[str, Any] = {}
    for name in ("ours", "ours-send_task"):
        row = find(name, 100, 1)
        if row is None or naive is None:
            continue
        ratios[f"{name}/naive @100ms, 1 process"] = round(row.throughput / naive.throughput, 2)
        if row.steady and naive.steady:
            ratios[f"{name}/naive steady @100ms, 1 process"] = round(row.steady / naive.steady, 2)
        if name == "ours" and raw is not None:
            ratios["ours/raw @100ms, 1 process"] = round(row.throughput / raw.throughput, 2)
    return ratios


def _table(rows: list[Row]) -> Table:
    table = Table("scenario", "latency", "procs", "steps", "msg/s", "steady", "p50 ms", "p99 ms",
                  "Redis RT/msg", "+Celery result", "Zalo calls/msg", "RSS MB",
                  title="zns bench")  # fmt: skip
    for r in rows:
        table.add_row(
            r.name, f"{r.latency_ms}", f"{r.processes}", f"{r.steps}", f"{r.throughput:,.0f}",
            _fmt(r.steady), _fmt(r.p50_ms), _fmt(r.p99_ms), _fmt(r.redis_trips_per_msg, 2),
            _fmt(r.celery_result_trips_per_msg, 2),
            _fmt(r.zalo_calls_per_msg, 2), _fmt(r.rss_mb),
        )  # fmt: skip
    return table


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"
