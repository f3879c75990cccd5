"""Worker-process hooks: `worker.ops.maintenance` and the lane feeder (`worker.ops.feeder`) on
daemon threads from ready to shutdown."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery.canvas import Signature, signature
from celery.signals import heartbeat_sent, worker_ready, worker_shutting_down

from tasks.app import app, runtime
from worker.messaging.bulk import BulkPublisher
from worker.messaging.celery_app import publish_step
from worker.metrics import register_quota_gauge, serve_metrics
from worker.ops.feeder import LaneFeeder
from worker.ops.gauges import register_gauges
from worker.ops.health import HealthFile
from worker.ops.maintenance import Maintenance
from worker.state.lanes import LaneEntry

log = logging.getLogger(__name__)
_stop = threading.Event()
#: After a failed pass a loop waits at least this long (a Redis outage: one line a second).
FAILED_PASS_PAUSE_S = 1.0
#: The feeder runs many passes a second; its heartbeat is written at most this often.
FEEDER_BEAT_S = 5.0
#: The lag probe sleeps this long between two measures of how late it wakes.
LAG_PROBE_S = 0.05


def publish(kwargs: dict[str, Any]) -> None:
    """Enqueue a journey step by name on our queue."""
    publish_step(app, kwargs)


def publish_entries(items: list[tuple[LaneEntry, dict[str, Any]]]) -> None:
    """Publish steps released from their lanes, each a single-step message under its own task id
    with its callbacks: those that share one `link` (or none) in one bulk publish (one LPUSH on a
    Redis broker, cheap in a worker whose threads all want the interpreter), the others alone."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    links: dict[str, Signature | None] = {}
    for entry, kwargs in items:
        if entry.link_error or len(entry.link or ()) > 1:
            publish_step(app, kwargs, task_id=entry.task_id, link=entry.link,
                         link_error=entry.link_error)  # fmt: skip
            continue
        link = entry.link[0] if entry.link else None
        key = json.dumps(link, sort_keys=True)
        links[key] = signature(link, app=app) if link else None
        groups.setdefault(key, []).append((entry.task_id, kwargs))
    for key, group in groups.items():
        BulkPublisher(app, link=links[key], steps_per_message=1).publish(group)


def _health() -> HealthFile:
    return HealthFile(runtime().settings.celery.health_file)


def _every(name: str, interval_s: float, work: Callable[[], bool]) -> None:
    """Run `work` until shutdown, pausing `interval_s` after a pass that found nothing to do
    (`work` returns False). A pass that fails (Redis restarting, the broker unreachable) is
    logged and the loop goes on after a pause of at least `FAILED_PASS_PAUSE_S`: this thread
    must outlive any outage."""
    while not _stop.is_set():
        try:
            busy = work()
        except Exception:
            log.exception("%s pass failed; trying again", name)
            _stop.wait(max(interval_s, FAILED_PASS_PAUSE_S))
            continue
        if not busy:
            _stop.wait(interval_s)


def _maintain() -> None:
    maintenance = Maintenance(runtime(), publish)
    health = _health()

    def work() -> bool:
        report = maintenance.run_once()
        health.beat("maintenance_at")
        if report.released or report.quota_probes or report.pause_probes or report.refreshes:
            log.info(
                "maintenance: refreshes=%d released=%d quota_probes=%d pause_probes=%d",
                report.refreshes,
                report.released,
                report.quota_probes,
                report.pause_probes,
            )
        return False

    _every("maintenance", runtime().settings.pipeline.maintenance_interval_s, work)


def _feed() -> None:
    feeder = LaneFeeder(runtime(), publish_entries)
    health = _health()
    beaten_at = 0.0

    def work() -> bool:
        nonlocal beaten_at
        released = feeder.run_once()
        if time.monotonic() - beaten_at >= FEEDER_BEAT_S:
            health.beat("feeder_at")
            beaten_at = time.monotonic()
        return released > 0

    _every("lane feeder", runtime().settings.pipeline.lane_feed_interval_s, work)


def _probe_lag() -> None:
    """How late a thread wakes in this process: the interpreter's queue (answer_times.py)."""
    answer_times = runtime().sender.answer_times
    while not _stop.is_set():
        started = time.perf_counter()
        _stop.wait(LAG_PROBE_S)
        answer_times.record_lag(time.perf_counter() - started - LAG_PROBE_S)


@worker_ready.connect
def start_maintenance(**_: Any) -> None:
    """Start the maintenance thread once the worker consumes."""
    _health().beat("consumer_at")
    rt = runtime()
    rt.meta_seal.warm()
    port = rt.settings.celery.metrics_port
    try:
        register_quota_gauge(rt.settings.account_names(), lambda a: rt.quota.view(a).remaining)
        register_gauges(rt)
        serve_metrics(port)
    except OSError as exc:  # another worker on this host has the port: no metrics, still work
        log.warning("metrics not served on port %d: %s", port, exc)
    # A finished step that woke the waiting steps of its journey re-enqueues them at once.
    rt.sender.on_wake = Maintenance(rt, publish).release_woken
    _stop.clear()
    threading.Thread(target=_maintain, name="zns-maintenance", daemon=True).start()
    threading.Thread(target=_feed, name="zns-lane-feeder", daemon=True).start()
    threading.Thread(target=_probe_lag, name="zns-lag-probe", daemon=True).start()


@heartbeat_sent.connect
def consumer_alive(**_: Any) -> None:
    """Celery's event heartbeat comes from the consumer loop: a stuck consumer stops it."""
    _health().beat("consumer_at")


@worker_shutting_down.connect
def stop_maintenance(**_: Any) -> None:
    """Stop it on warm or cold shutdown."""
    _stop.set()
