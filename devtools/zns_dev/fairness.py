"""`zns bench --only fairness`: one account's backlog or trouble must not delay another account,
and a realtime step overtakes its own account's bulk backlog.

Scenarios, each against a fresh sandbox, fresh private Redis servers and one worker process with
its shipped defaults (no concurrency or batching given):

    throttled  10,000 bulk steps of account `default` (20/s), then 200 steps of account `b`
               (200/s) at once, and 50 realtime steps of `default` itself, one every 200 ms
               (a trickle: 50 at once cannot all go within 2 s at 20/s, whatever the design)
    exhausted  10,000 bulk steps of account `c` whose quota is used up, then 200 steps of `b`
    slow       10,000 bulk steps of account `d` (no rate limit) whose Zalo answers take 2 s (the
               sandbox's latency for that OA alone), then, once `d` holds its threads (its first
               100 sends in), 200 steps of `b`; `d` may hold at most its `max_in_flight` (default
               100) of the worker's 200 threads

Reported: per lane p50/p99 from enqueue to sent, each account's busiest 1-s window, duplicates
and journey tokens per journey among what was sent (the Redis round trips the lanes cost per
message: the `ours` row of the throughput bench, enqueued through the lanes). A run stops once
the measured steps are sent (the backlog is left: at 20/s it takes over 8 minutes, at 100 in
flight x 4 s per new journey ~7 minutes); the backlog's sends so far count for its busiest
window.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from celery import Celery

from worker.job import derive_tracking_id
from worker.messaging.names import QUEUE, TASK_NAME
from worker.producer import Producer
from worker.settings import Settings
from zns_dev.bench import (
    Row,
    Scenario,
    Size,
    _busiest_window,
    _percentile,
    _redis,
    _sandbox,
    _worker_env,
    _workers,
    make_steps,
)
from zns_dev.localrun import wait_until
from zns_dev.sandbox.control import SandboxControl

BACKLOG = 10_000
OTHER = 200
OWN_REALTIME = 50
OWN_EVERY_S = 0.2
SLOW_RATE, FAST_RATE = 20, 200
#: The slow account's Zalo latency, and how many of its sends come in before `b`'s steps.
SLOW_ZALO_MS, SLOW_WARM_SENDS = 2_000, 100
#: Each scenario's backlog account (`d` is added for `slow` only: the others run as before).
BACKLOG_ACCOUNT = {"throttled": "default", "exhausted": "c", "slow": "d"}
SCENARIOS = tuple(BACKLOG_ACCOUNT)


def _add_oas(sc: Scenario, scenario: str) -> dict[str, str]:
    """Accounts b and c (and d for `slow`), each an OA of its own in the sandbox (default is the
    sandbox's own); d's API calls answered `SLOW_ZALO_MS` late."""
    env: dict[str, str] = {}
    for name in ("b", "c", "d") if scenario == "slow" else ("b", "c"):
        spec = sc.control.add_oa(f"app-{name}")
        prefix = f"ZNS_ACCOUNTS__{name.upper()}__"
        env |= {
            f"{prefix}APP_ID": spec.app_id,
            f"{prefix}SECRET_KEY": spec.secret_key,
            f"{prefix}ACCESS_TOKEN": spec.access_token,
            f"{prefix}REFRESH_TOKEN": spec.refresh_token,
        }
    if scenario == "slow":
        sc.control.set_oa_latency("app-d", SLOW_ZALO_MS)
    env["ZNS_ACCOUNTS__B__RATE_PER_S"] = str(FAST_RATE)
    env["ZNS_RATE_PER_S"] = str(SLOW_RATE)
    return env


#: A phone prefix per group of steps: each step is a journey (a customer) of its own.
PREFIXES = {"backlog": "8490", "other": "8491", "own": "8492"}


def _steps(count: int, account: str, tag: str) -> list[dict[str, Any]]:
    steps = make_steps(count, count)
    for n, step in enumerate(steps):
        step["idempotency_key"] = f"{tag}-{n}"
        step["account"] = account
        step["phone"] = f"{PREFIXES[tag]}{n:07d}"
        step["journey"] = f"{tag}-{n}"
    return steps


def bench_fairness(workdir: Path, scenario: str) -> Row:
    """One scenario (`throttled`, `exhausted` or `slow`); see the module docstring."""
    with _sandbox(0) as (url, control), _redis() as state, _redis() as broker:
        sc = Scenario(url, control, Size(BACKLOG, BACKLOG, (0,), (1,), 0, 0), 1, 0, workdir)
        env = {**_worker_env(state.url, broker.url, url), **_add_oas(sc, scenario)}
        env.pop("ZNS_CELERY__CONCURRENCY")  # the shipped default
        if scenario == "exhausted":
            control.set_quota(1_000_000, remaining=0, app_id="app-c")
        settings = Settings(_env_file=None, redis_url=state.url, broker_url=broker.url)
        producer = Producer(settings)
        bare = Celery(broker=broker.url)
        backlog = _steps(BACKLOG, BACKLOG_ACCOUNT[scenario], "backlog")
        other = _steps(OTHER, "b", "other")
        own = _steps(OWN_REALTIME, "default", "own") if scenario == "throttled" else []
        enqueued_at: dict[str, float] = {}
        with _workers(sc, env):
            producer.enqueue_many(backlog)  # the bulk run, into its lane
            _backlog_under_way(control, scenario)
            for step in other:  # realtime steps, as a bare send_task producer sends them
                enqueued_at[derive_tracking_id(step["idempotency_key"])] = time.time()
                bare.send_task(TASK_NAME, kwargs=step, queue=QUEUE)
            for step in own:
                enqueued_at[derive_tracking_id(step["idempotency_key"])] = time.time()
                bare.send_task(TASK_NAME, kwargs=step, queue=QUEUE)
                time.sleep(OWN_EVERY_S)
            measured = {derive_tracking_id(s["idempotency_key"]) for s in [*other, *own]}
            wait_until(
                lambda: measured <= {m.tracking_id for m in control.messages()},
                timeout_s=300,
                interval_s=0.2,
                what="the measured steps sent",
            )
            time.sleep(3.0)  # a few more seconds of the backlog, for its busiest window
            messages = control.messages()
        tokens = Counter((t.app_id, t.phone) for t in control.journey_tokens())
        producer.close()
    return _row(
        scenario, messages, enqueued_at=enqueued_at, own=own,
        tokens=tokens,
    )  # fmt: skip


def _backlog_under_way(control: SandboxControl, scenario: str) -> None:
    """Wait until the backlog is being sent: 2 s, or for `slow` its first sends (by then its
    steps hold every thread the account may have)."""
    if scenario != "slow":
        time.sleep(2.0)
        return
    wait_until(
        lambda: control.stats().sends_accepted >= SLOW_WARM_SENDS,
        timeout_s=60,
        interval_s=0.2,
        what=f"the slow account's first {SLOW_WARM_SENDS} sends",
    )


def _row(
    scenario: str,
    messages: list[Any],
    *,
    enqueued_at: dict[str, float],
    own: list[dict[str, Any]],
    tokens: Counter[tuple[str, str]],
) -> Row:
    own_ids = {derive_tracking_id(s["idempotency_key"]) for s in own}
    lanes: dict[str, list[float]] = {"other account": [], "own realtime": []}
    for m in messages:
        if m.tracking_id in enqueued_at:
            lane = "own realtime" if m.tracking_id in own_ids else "other account"
            lanes[lane].append(m.sent_time_ms - enqueued_at[m.tracking_id] * 1000)
    by_app: dict[str, list[int]] = {}
    for m in messages:
        by_app.setdefault(m.app_id, []).append(m.sent_time_ms)
    busiest = {app: _busiest_window(sorted(times), 1000) for app, times in by_app.items()}
    counts = Counter(m.tracking_id for m in messages)
    extra: dict[str, Any] = {
        f"{lane} p50/p99 ms": (_percentile(v, 0.5), _percentile(v, 0.99))
        for lane, v in lanes.items()
        if v
    }
    extra |= {
        "busiest 1 s window by app": busiest,
        "sent": len(messages),
        "sent twice": sum(1 for n in counts.values() if n > 1),
        "journeys with more than one token": sum(1 for n in tokens.values() if n > 1),
    }
    other = lanes["other account"]
    return Row(
        name=f"fairness-{scenario}",
        latency_ms=0,
        processes=1,
        steps=len(messages),
        seconds=0.0,
        throughput=0.0,
        p50_ms=_percentile(other, 0.5),
        p99_ms=_percentile(other, 0.99),
        extra=extra,
    )
