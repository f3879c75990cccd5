"""Worker-process hooks: `worker.ops.maintenance` and the lane feeder (`worker.ops.feeder`) on
daemon threads from ready to shutdown."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import heartbeat_sent, worker_ready, worker_shutting_down

from tasks.app import app, runtime
from worker.messaging.celery_app import publish_batch, publish_step
from worker.metrics import register_quota_gauge, serve_metrics
from worker.ops.feeder import LaneFeeder
from worker.ops.gauges import register_gauges
from worker.ops.health import HealthFile
from worker.ops.maintenance import Maintenance
from worker.state.lanes import LaneEntry

log = logging.getLogger(__name__)
_stop = threading.Event()


def publish(kwargs: dict[str, Any]) -> None:
    """Enqueue a journey step by name on our queue."""
    publish_step(app, kwargs)


def publish_entries(items: list[tuple[LaneEntry, dict[str, Any]]]) -> None:
    """Publish steps released from their lanes under their own task ids, with their callbacks:
    one alone as a single step, several (same callbacks) as one bulk message."""
    first = items[0][0]
    if len(items) == 1:
        publish_step(app, items[0][1], task_id=first.task_id, link=first.link,
                     link_error=first.link_error)  # fmt: skip
        return
    link = first.link[0] if first.link else None
    publish_batch(app, [(entry.task_id, kwargs) for entry, kwargs in items], link=link)


def _feed() -> None:
    feeder = LaneFeeder(runtime(), publish_entries)
    interval = runtime().settings.pipeline.lane_feed_interval_s
    while not _stop.is_set():
        released = feeder.run_once()
        if not released:
            _stop.wait(interval)


def _health() -> HealthFile:
    return HealthFile(runtime().settings.celery.health_file)


def _loop() -> None:
    maintenance = Maintenance(runtime(), publish)
    interval = runtime().settings.pipeline.maintenance_interval_s
    health = _health()
    while not _stop.is_set():
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
        _stop.wait(interval)


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
    threading.Thread(target=_loop, name="zns-maintenance", daemon=True).start()
    threading.Thread(target=_feed, name="zns-lane-feeder", daemon=True).start()


@heartbeat_sent.connect
def consumer_alive(**_: Any) -> None:
    """Celery's event heartbeat comes from the consumer loop: a stuck consumer stops it."""
    _health().beat("consumer_at")


@worker_shutting_down.connect
def stop_maintenance(**_: Any) -> None:
    """Stop it on warm or cold shutdown."""
    _stop.set()
