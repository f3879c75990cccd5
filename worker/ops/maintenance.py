"""Periodic duties every worker process runs (no singleton to lose): re-enqueue due parked jobs,
probe the quota of exhausted accounts, send one canary job for a paused account."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from worker.clock import Clock, ms, system_clock
from worker.errors import ZnsError
from worker.pipeline.step_meta import META_FIELD, MetaSeal, StepMeta
from worker.runtime import Runtime
from worker.state.locks import Lock
from worker.state.parking import ParkedJob
from worker.status import ParkReason

log = logging.getLogger(__name__)

Publish = Callable[[dict[str, Any]], object]
"""Enqueue task kwargs on the `zns` queue."""
#: Jobs a finished step re-enqueues itself after waking its journey's waiting steps: a journey has
#: a handful; the rest (if any) go at the next maintenance pass, so the task is never held long.
WOKEN_RELEASE_LIMIT = 50


@dataclass
class Report:
    """What one maintenance pass did."""

    released: int = 0
    refreshes: int = 0
    quota_probes: int = 0
    pause_probes: int = 0
    errors: list[str] = field(default_factory=list)


def job_kwargs(seal: MetaSeal, job: ParkedJob, *, probe: bool = False) -> dict[str, Any]:
    """Task kwargs for a parked job, with its history (and the probe flag) in a sealed `_meta`."""
    history = job.meta.get("history", [])
    meta = StepMeta(history=tuple(h for h in history if isinstance(h, dict)), probe=probe)
    return {**job.kwargs, META_FIELD: seal.seal(meta, job.kwargs)}


class Maintenance:
    """One pass over every configured account; safe to run in many processes at once."""

    def __init__(self, runtime: Runtime, publish: Publish, *, clock: Clock = system_clock) -> None:
        self._rt = runtime
        self._publish = publish
        self._clock = clock

    def run_once(self) -> Report:
        """Release, probe; never raises (a failing account must not stop the others)."""
        report = Report()
        for account in self._rt.settings.account_names():
            try:
                self._account_pass(account, report)
            except (ZnsError, OSError, redis.RedisError) as exc:  # Redis or Zalo unreachable
                report.errors.append(f"{account}: {type(exc).__name__}: {exc}")
                log.warning("maintenance pass for %s failed: %s", account, exc)
        return report

    def _account_pass(self, account: str, report: Report) -> None:
        report.refreshes += int(self._refresh_token(account))
        report.released += self.release_due(account)
        report.quota_probes += int(self._probe_quota(account))
        report.pause_probes += int(self._probe_paused(account))

    def release_due(self, account: str) -> int:
        """Re-enqueue the account's due parked jobs; returns how many."""
        batch = self._rt.settings.pipeline.release_batch
        total = 0
        while True:
            jobs = self._rt.parking.lease_due(account, batch)
            for job in jobs:
                self._publish(job_kwargs(self._rt.meta_seal, job))
            self._rt.parking.done(account, [job.parking_id for job in jobs])
            total += len(jobs)
            if len(jobs) < batch:
                return total

    def release_woken(self, account: str) -> int:
        """Re-enqueue a bounded batch of due parked jobs now (steps a finished step woke)."""
        jobs = self._rt.parking.lease_due(account, WOKEN_RELEASE_LIMIT)
        for job in jobs:
            self._publish(job_kwargs(self._rt.meta_seal, job))
        self._rt.parking.done(account, [job.parking_id for job in jobs])
        return len(jobs)

    def _refresh_token(self, account: str) -> bool:
        """Proactive refresh; a failure is logged and recorded, never pauses a working account
        (the access token still works; the reactive path pauses when it stops working)."""
        try:
            return self._rt.access_tokens.refresh_if_due(account)
        except ZnsError as exc:
            log.error("proactive token refresh of %s failed: %s", account, exc)
            return False

    def _probe_quota(self, account: str) -> bool:
        """While the counter says exhausted, ask Zalo (free) at most once per interval, globally."""
        view = self._rt.quota.view(account)
        floor = self._rt.settings.pipeline.quota_reserve
        if view.remaining is None or view.remaining > floor:
            return False
        if not self._once_per(account, "quota", self._rt.settings.pipeline.quota_probe_interval_s):
            return False
        remaining = self._rt.sender.probe_quota(account)
        if remaining is not None and remaining > floor:
            woken = self._rt.parking.wake(account, {ParkReason.QUOTA})
            log.info("quota of %s is back (%d); %d parked jobs woken", account, remaining, woken)
        return True

    def _probe_paused(self, account: str) -> bool:
        """A paused account gets one canary send per interval; its success resumes the account."""
        pause = self._rt.accounts.status(account)
        interval = self._rt.settings.pipeline.pause_probe_interval_s
        if pause is None or ms(self._clock()) - pause.since_ms < ms(interval):
            return False  # not paused, or paused too recently for a canary
        canary = next(
            (job for job in self._rt.parking.entries(account) if job.reason is ParkReason.PAUSED),
            None,
        )
        if canary is None:
            return False
        if not self._once_per(account, "paused", interval):
            return False
        self._publish(job_kwargs(self._rt.meta_seal, canary, probe=True))
        self._rt.parking.done(account, [canary.parking_id])
        log.info("account %s paused: sent one canary job", account)
        return True

    def _once_per(self, account: str, what: str, interval_s: float) -> bool:
        """True for exactly one process per interval (a lock left to expire, never released)."""
        key = self._rt.keys.probe_lock(account, what)
        return Lock(self._rt.redis, key, ttl_s=interval_s).acquire()
