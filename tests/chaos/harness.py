"""The chaos harness: one scenario's own Redis, sandbox Zalo and worker processes, the load, the
drain and the tally of what the sandbox received.

    Chaos(...)            a private redis-server (AOF everysec when durability matters), the
                          sandbox in a subprocess, settings/runtime/producer in this process
      .start_worker()     a real `celery -A tasks.app worker -Q zns -P threads` process
      .enqueue(steps)     through `worker.producer.Producer.enqueue_many`
      .wait_drained()     broker list `zns` empty, nothing unacked, nothing parked, no claim
                          held, every step sent or dead-lettered
      .tally(steps)       per tracking_id: sent once / twice / lost, dead-lettered

Every wait is bounded; nothing here touches the shared Redis or RabbitMQ.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from kombu import Connection, Exchange, Queue
from kombu.transport.redis import Channel as RedisChannel

from tests.conftest import FAST_PIPELINE, settings_from
from tests.support import SANDBOX_CREDENTIALS, RedisServer, WorkerProcess, wait_until
from worker.job import derive_tracking_id
from worker.messaging.celery_app import celery_config
from worker.messaging.names import QUEUE
from worker.producer import Producer
from worker.runtime import Runtime, build_runtime
from worker.settings import DEFAULT_ACCOUNT, Settings
from zns_dev.sandbox.config import SandboxConfig
from zns_dev.sandbox.control import SandboxControl
from zns_dev.sandbox.records import SentMessage
from zns_dev.sandbox.server import running_sandbox

#: kombu's Redis transport: the queue list (plus its priority lists) and the unacked bookkeeping.
PRIORITY_SEPARATOR = "\x06\x16"
QUEUE_LISTS = (QUEUE, *(f"{QUEUE}{PRIORITY_SEPARATOR}{p}" for p in (3, 6, 9)))
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
RESULT_KEY = "celery-task-meta-{}"

#: Scenarios run with fast retries and maintenance (FAST_PIPELINE); the Celery timeouts that a
#: scenario proves (visibility timeout 240 s, claim ttl 150 s) stay at their production defaults.
CHAOS_ENV = {
    **FAST_PIPELINE,
    "ZNS_CELERY__METRICS_PORT": "0",  # several workers on one host
    "ZNS_LOG_LEVEL": "INFO",
}
#: Shortened Celery/claim timeouts, consistent with each other as Settings demands (time limit
#: < claim ttl; claim ttl + max countdown < visibility timeout), for scenarios whose point is not
#: the timeouts themselves: a job caught in flight by an outage waits for its claim to expire,
#: 15 s here instead of 150 s in production.
SHORT_TIMEOUTS = {
    "ZNS_CELERY__SOFT_TIME_LIMIT_S": "5",
    "ZNS_CELERY__TIME_LIMIT_S": "10",
    "ZNS_PIPELINE__CLAIM_TTL_S": "15",
    "ZNS_PIPELINE__TOKEN_WAIT_S": "3",
    "ZNS_PIPELINE__RATE_MAX_WAIT_S": "1",
    "ZNS_CELERY__VISIBILITY_TIMEOUT_S": "30",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One journey step a scenario enqueues, and how the sandbox will know it."""

    key: str
    job: dict[str, Any]

    @property
    def tracking_id(self) -> str:
        """The tracking id the worker derives from the idempotency key."""
        return derive_tracking_id(self.key)


def make_steps(prefix: str, count: int, *, per_journey: int = 4) -> list[Step]:
    """`count` steps of a billing run: journeys of `per_journey` steps, one phone per journey."""
    steps = []
    for index in range(count):
        journey, step = divmod(index, per_journey)
        key = f"{prefix}-{index:05d}"
        job = {
            "phone": f"09{journey % 100_000_000:08d}",
            "template_id": f"10{step}",
            "template_data": {"order_code": f"{prefix}-{journey:05d}", "step": step + 1},
            "journey": f"{prefix}-j{journey:05d}",
            "idempotency_key": key,
        }
        steps.append(Step(key, job))
    return steps


@dataclass
class Tally:
    """What the sandbox and the dead-letter store say happened to each step."""

    enqueued: int = 0
    sent_once: int = 0
    sent_twice: int = 0  # sent two or more times (see `extra_sends`)
    extra_sends: int = 0  # messages beyond the first, summed over steps
    lost: int = 0  # neither sent nor dead-lettered
    dead_lettered: int = 0
    sent_and_dead: int = 0  # Zalo has it, yet it was dead-lettered (an answer was lost)
    lost_keys: list[str] = field(default_factory=list)
    duplicate_keys: list[str] = field(default_factory=list)
    failed_results: int = 0  # a task raised: Celery acked it without a dead letter

    def row(self) -> dict[str, Any]:
        """The figures for the report table."""
        return {
            "enqueued": self.enqueued,
            "sent_once": self.sent_once,
            "sent_twice": self.sent_twice,
            "extra_sends": self.extra_sends,
            "lost": self.lost,
            "dead_lettered": self.dead_lettered,
            "sent_and_dead": self.sent_and_dead,
            "failed_results": self.failed_results,
        }


def tally(
    steps: Iterable[Step],
    messages: Iterable[SentMessage],
    dead_keys: Iterable[str],
    failed_results: int = 0,
) -> Tally:
    """Count per tracking id: sent once / twice / lost, and dead-lettered."""
    per_tracking = Counter(m.tracking_id for m in messages)
    dead = set(dead_keys)
    result = Tally(failed_results=failed_results)
    for step in steps:
        result.enqueued += 1
        sends = per_tracking.get(step.tracking_id, 0)
        if sends == 1:
            result.sent_once += 1
        elif sends > 1:
            result.sent_twice += 1
            result.extra_sends += sends - 1
            result.duplicate_keys.append(step.key)
        if step.key in dead:
            result.dead_lettered += 1
            result.sent_and_dead += int(sends > 0)
        elif sends == 0:
            result.lost += 1
            result.lost_keys.append(step.key)
    return result


def restore_sweep_period_s(settings: Settings) -> float:
    """How often a live worker looks for expired unacked messages on a Redis broker: kombu's
    `unacked_restore_interval` x `unacked_restore_throttle` (5.7: 10 s x 10; older kombu has no
    throttle and sweeps every interval)."""
    options = celery_config(settings)["broker_transport_options"]
    interval_s = options.get(
        "unacked_restore_interval", getattr(RedisChannel, "unacked_restore_interval", 10)
    )
    throttle = options.get(
        "unacked_restore_throttle", getattr(RedisChannel, "unacked_restore_throttle", 1)
    )
    return float(interval_s) * float(throttle)


@dataclass(frozen=True, slots=True)
class HeldMessage:
    """A message in the Redis broker's unacked hash: delivered to a worker, not yet acked."""

    delivery_tag: str
    task_id: str
    keys: tuple[str, ...]  # the idempotency keys of its step(s): a bulk batch carries several
    delivered_at: float


class Chaos:
    """One scenario's private world. Use as a context manager; everything stops on exit."""

    def __init__(
        self,
        workdir: Path,
        *,
        sandbox: SandboxConfig | None = None,
        appendonly: bool = True,
        broker_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.redis_server = RedisServer(appendonly=appendonly, workdir=workdir)
        self._sandbox_config = sandbox or SandboxConfig(port=0)
        self._broker_url = broker_url
        self._extra_env = dict(env or {})
        self._stack = contextlib.ExitStack()
        self.workers: list[WorkerProcess] = []
        self.sandbox_url = ""
        self.env: dict[str, str] = {}
        self.undrained = ""

    # -- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> Chaos:
        self.redis_server.start()
        self._stack.callback(self.redis_server.stop)
        self.sandbox_url = self._stack.enter_context(running_sandbox(self._sandbox_config))
        self.control = SandboxControl(self.sandbox_url, timeout_s=30)
        self._stack.callback(self.control.close)
        self.env = {
            "ZNS_REDIS_URL": self.redis_server.url,
            "ZNS_API_BASE_URL": self.sandbox_url,
            "ZNS_OAUTH_BASE_URL": self.sandbox_url,
            **SANDBOX_CREDENTIALS,
            **CHAOS_ENV,
            **({"ZNS_BROKER_URL": self._broker_url} if self._broker_url else {}),
            **self._extra_env,
        }
        self.settings: Settings = settings_from(self.env)
        self.runtime: Runtime = build_runtime(self.settings)
        self._stack.callback(self.runtime.close)
        self.producer = Producer(self.settings)
        self.broker = redis.Redis.from_url(self.redis_server.url, decode_responses=True)
        self._stack.callback(self.broker.close)
        self._stack.callback(self._stop_workers)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop(timeout_s=20)

    # -- workers ---------------------------------------------------------------------------

    def start_worker(self, *, concurrency: int = 16, **extra_env: str) -> WorkerProcess:
        """A real worker process on queue `zns`, logging to the scenario's directory."""
        index = len(self.workers)
        worker = WorkerProcess(
            {**self.env, **extra_env},
            self.workdir / f"worker-{index}.log",
            concurrency=concurrency,
            name=f"chaos{index}",
        )
        self.workers.append(worker)
        return worker.start()

    def alive_workers(self) -> list[WorkerProcess]:
        """Workers whose process is running."""
        return [w for w in self.workers if w.process is not None and w.process.poll() is None]

    def worker_logs(self, tail_chars: int = 3000) -> str:
        """The end of every worker's log, for a failure message."""
        return "\n".join(f"--- {w.log_path.name}\n{w.log()[-tail_chars:]}" for w in self.workers)

    # -- load ------------------------------------------------------------------------------

    def enqueue(self, steps: Iterable[Step]) -> list[str]:
        """Validate and enqueue through the producer API; returns the task ids."""
        return self.producer.enqueue_many([s.job for s in steps]).task_ids

    def sends(self) -> int:
        """Messages the sandbox has accepted so far."""
        return self.control.stats().sends_accepted

    def wait_sends(self, count: int, *, timeout_s: float) -> None:
        """Until the sandbox has accepted `count` messages."""
        wait_until(
            lambda: self.sends() >= count, timeout_s=timeout_s, interval_s=0.05, what=f"{count}"
        )

    # -- the broker ------------------------------------------------------------------------

    def ready(self) -> int:
        """Messages waiting in the Redis broker's `zns` lists."""
        return sum(int(self.broker.llen(name)) for name in QUEUE_LISTS)

    def unacked(self) -> int:
        """Messages delivered to a worker and not acked (Redis broker)."""
        return int(self.broker.hlen(UNACKED))

    def held_messages(self) -> dict[str, HeldMessage]:
        """The Redis broker's unacked messages by delivery tag, with their job's key."""
        raw: dict[str, str] = self.broker.hgetall(UNACKED)  # type: ignore[assignment]
        scores = dict(self.broker.zrange(UNACKED_INDEX, 0, -1, withscores=True))  # type: ignore[arg-type]
        held = {}
        for tag, value in raw.items():
            message = json.loads(value)[0]
            held[tag] = HeldMessage(
                delivery_tag=tag,
                task_id=str(message.get("headers", {}).get("id")),
                keys=_job_keys(message),
                delivered_at=float(scores.get(tag, 0.0)),
            )
        return held

    # -- drain -----------------------------------------------------------------------------

    def claimed_keys(self, account: str = DEFAULT_ACCOUNT) -> int:
        """Idempotency keys still `claimed` (a job in hand, or a dead worker's claim)."""
        pattern = self.runtime.keys.idempotency(account, "*")
        pipe = self.runtime.redis.pipeline(transaction=False)
        for key in self.runtime.redis.scan_iter(match=pattern, count=1000):
            pipe.hget(key, "state")
        return sum(1 for state in pipe.execute() if state == "claimed")

    def parked(self) -> int:
        """Parked jobs over every configured account."""
        return sum(self.runtime.parking.count(a) for a in self.settings.account_names())

    def dead_keys(self) -> list[str]:
        """Idempotency keys of the dead letters (sender dead letters carry it; invalid jobs
        carry it in their kwargs)."""
        keys = []
        for entry in self._dead_letters():
            if entry.idempotency_key:
                keys.append(entry.idempotency_key)
            elif isinstance(entry.kwargs, dict) and isinstance(
                entry.kwargs.get("idempotency_key"), str
            ):
                keys.append(entry.kwargs["idempotency_key"])
        return keys

    def _dead_letters(self) -> list[Any]:
        store = self.runtime.dead_letters
        return store.entries(limit=max(store.count(), 1))

    def broker_idle(self) -> bool:
        """Nothing waiting, nothing held by a worker (Redis broker)."""
        return self.ready() == 0 and self.unacked() == 0

    def drained(
        self,
        steps: list[Step],
        broker_idle: Callable[[], bool] | None = None,
        *,
        all_accounted: bool = True,
    ) -> bool:
        """The queue is empty, nothing unacked or parked, no claim held, and (unless a scenario
        may lose jobs) every step sent or dead-lettered."""
        idle = broker_idle or self.broker_idle
        if not idle() or self.parked() or self.claimed_keys():
            return False
        if all_accounted:
            done = {m.tracking_id for m in self.control.messages()}
            dead = set(self.dead_keys())
            if not all(s.tracking_id in done or s.key in dead for s in steps):
                return False
        return idle()  # again: a retry may have been published while we looked

    def wait_drained(
        self,
        steps: list[Step],
        *,
        timeout_s: float,
        started_at: float,
        broker_idle: Callable[[], bool] | None = None,
        all_accounted: bool = True,
    ) -> float:
        """Wait for the drain (bounded); returns seconds since `started_at`, or infinity when it
        timed out (`undrained` then says what was left), so that the row is still reported."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError):
                if self.drained(steps, broker_idle, all_accounted=all_accounted):
                    return time.monotonic() - started_at
            time.sleep(1.0)
        self.undrained = (
            f"not drained after {timeout_s:.0f}s: ready={self.ready()} unacked={self.unacked()} "
            f"parked={self.parked()} claimed={self.claimed_keys()}"
        )
        return math.inf

    def tally(self, steps: list[Step], task_ids: Iterable[str] = ()) -> Tally:
        """The per-step verdict from the sandbox's record and the dead-letter store."""
        return tally(
            steps, self.control.messages(), self.dead_keys(), self.failed_results(task_ids)
        )

    def failed_results(self, task_ids: Iterable[str]) -> int:
        """Tasks whose result is FAILURE: an exception escaped the task and Celery acked it."""
        ids = list(task_ids)
        if not ids:
            return 0
        values = self.runtime.redis.mget([RESULT_KEY.format(i) for i in ids])
        return sum(1 for v in values if v and json.loads(v).get("status") == "FAILURE")

    def journey_figures(self, steps: list[Step]) -> dict[str, int]:
        """Journeys enqueued, journey tokens created, and tokens billed (used for a message)."""
        stats = self.control.stats()
        return {
            "journeys": len({s.job["journey"] for s in steps}),
            "tokens_created": stats.journey_tokens_created,
            "tokens_billed": stats.journey_tokens_used,
        }


def _job_keys(message: dict[str, Any]) -> tuple[str, ...]:
    """The idempotency keys inside a raw kombu message (base64 body, Celery protocol 2): one
    for a single step, each step's for a bulk batch (`zns.send_journey_steps`)."""
    body = message.get("body", "")
    with contextlib.suppress(ValueError, TypeError, IndexError, AttributeError):
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        kwargs = json.loads(body)[1]
        steps = kwargs.get("steps")
        jobs = [s.get("kwargs", {}) for s in steps] if isinstance(steps, list) else [kwargs]
        keys = (job.get("idempotency_key") for job in jobs)
        return tuple(key for key in keys if isinstance(key, str))
    return ()


def rabbitmq_idle(vhost: str, url: str, node: str | None = None) -> Callable[[], bool]:
    """Nothing ready in `zns` (a passive declare) and, when rabbitmqctl is there (asking `node`,
    else the machine's), nothing unacked in it and nothing waiting in Celery's delay queues
    (quorum queues: a retry's countdown passes there)."""

    def idle() -> bool:
        with Connection(url, connect_timeout=5) as conn:
            queue = Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE)(conn.channel())
            declared: Any = queue.queue_declare(passive=True)
        if declared.message_count:
            return False
        if shutil.which("rabbitmqctl") is None:
            return True  # the step accounting and the claims still have to agree
        command = ["rabbitmqctl", "-q", *(["-n", node] if node else []), "list_queues"]
        listing = subprocess.run(
            [*command, "-p", vhost, "name", "messages", "messages_unacknowledged"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        for line in listing.splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            if parts[0] == QUEUE and parts[2] != "0":
                return False
            if parts[0].startswith("celery_delayed_") and parts[1] != "0":
                return False
        return True

    return idle
