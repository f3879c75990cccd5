"""Operator actions shared by the CLI and the worker: resume, release, replay."""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.errors import InvalidJob
from worker.job import parse_job
from worker.ops.maintenance import Maintenance
from worker.runtime import Runtime
from worker.status import ParkReason


def _publisher(rt: Runtime) -> Maintenance:
    from worker.messaging.celery_app import create_celery, publish_step  # noqa: PLC0415 (slow import)

    app = create_celery(rt.settings)
    return Maintenance(rt, lambda kwargs: publish_step(app, kwargs))


def release_parked(rt: Runtime, account: str, reasons: set[ParkReason] | None) -> int:
    """Make parked jobs due now and re-enqueue them; returns how many were woken (the workers'
    maintenance passes may publish some of them before this process does)."""
    woken = rt.parking.wake(account, reasons)
    published = _publisher(rt).release_due(account)
    return max(woken, published)


def resume_account(rt: Runtime, account: str) -> tuple[bool, int]:
    """Lift a pause and re-enqueue the jobs it parked; returns (was paused, released)."""
    was_paused = rt.accounts.resume(account)
    return was_paused, release_parked(rt, account, {ParkReason.PAUSED})


@dataclass
class ReplayResult:
    """Which dead letters went back on the queue, and which stayed (with why)."""

    replayed: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)


def replay_dead_letters(rt: Runtime, ids: list[str]) -> ReplayResult:
    """Re-enqueue dead letters whose job is valid and was never sent; remove them once enqueued."""
    from worker.producer import Producer  # noqa: PLC0415

    producer = Producer(rt.settings)
    result = ReplayResult()
    for entry_id in ids:
        entry = rt.dead_letters.get(entry_id)
        if entry is None:
            result.kept.append((entry_id, "no such dead letter"))
            continue
        try:
            job = parse_job(entry.kwargs, default_key=entry.idempotency_key or entry_id)
        except InvalidJob as exc:
            result.kept.append((entry_id, f"still invalid: {exc}"))
            continue
        if not rt.idempotency.reopen(job.account, job.idempotency_key):
            result.kept.append((entry_id, "already sent or in flight; not replayed"))
            continue
        rt.status.reopen(job.account, job.idempotency_key)
        producer.enqueue(**job.kwargs())
        rt.dead_letters.remove([entry_id])
        result.replayed.append(entry_id)
    return result
