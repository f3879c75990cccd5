"""Cheap health checks for probes: a heartbeat file the worker keeps fresh, read by `zns check`.

The worker writes three timestamps: `consumer_at` on every Celery event heartbeat (sent from the
consumer's own loop, so it stops when the worker stops consuming), `maintenance_at` on every
maintenance pass and `feeder_at` from the lane feeder (at most every few seconds). A probe reads
a small local file: no broker round trip, no `celery inspect`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from worker.settings import DEFAULT_HEALTH_FILE

KINDS = ("consumer_at", "maintenance_at", "feeder_at")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a check found."""

    healthy: bool
    reason: str


class HealthFile:
    """The heartbeat file of one worker process."""

    def __init__(self, path: Path = DEFAULT_HEALTH_FILE) -> None:
        self.path = path

    def beat(self, kind: str, *, now: float | None = None) -> None:
        """Record that `kind` (one of `KINDS`) is alive now; atomic replace."""
        state = self.read() or {}
        state[kind] = time.time() if now is None else now
        state["pid"] = os.getpid()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(self.path)

    def check(self, *, max_age_s: float, now: float | None = None) -> Verdict:
        """Healthy when every heartbeat is younger than `max_age_s`."""
        state = self.read()
        if state is None:
            return Verdict(False, f"no heartbeat file at {self.path} (worker not started?)")
        current = time.time() if now is None else now
        for kind in KINDS:
            at = state.get(kind)
            if not isinstance(at, int | float):
                return Verdict(False, f"{kind} never written {self._source(state)}")
            age = current - at
            if age > max_age_s:
                limit = f"limit {max_age_s:.0f}s"
                return Verdict(False, f"{kind} is {age:.0f}s old ({limit}) {self._source(state)}")
        return Verdict(True, "ok")

    def _source(self, state: dict[str, float | int]) -> str:
        """Which file, written by which process: a file left by another run says so."""
        pid = state.get("pid")
        if not isinstance(pid, int):
            return f"in {self.path}"
        alive = "" if _running(pid) else ", which is not running"
        return f"in {self.path}, written by pid {pid}{alive}"

    def read(self) -> dict[str, float | int] | None:
        """The heartbeats as written (None: no readable file)."""
        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None


def _running(pid: int) -> bool:
    """Whether a process with this pid exists here (the probe runs beside the worker)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True
