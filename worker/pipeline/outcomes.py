"""What one attempt at a journey step came to; the task maps each to Celery semantics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.errors import ErrorClass
from worker.status import ParkReason


@dataclass(frozen=True, slots=True)
class Sent:
    """Zalo accepted the message."""

    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Already sent earlier: the stored result, no Zalo call."""

    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AlreadyDead:
    """Already dead-lettered earlier: nothing to do."""

    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after a short delay (always far below the visibility timeout)."""

    delay_s: float
    reason: str
    error: dict[str, Any]  # the attempt history's entry: {"class": ErrorClass, "code", "message"}

    @property
    def error_class(self) -> ErrorClass:
        """Why: a failure, or a wait (`WAITS`)."""
        return ErrorClass(self.error["class"])


@dataclass(frozen=True, slots=True)
class Queued:
    """Wait in the account's lane (worker/state/lanes.py): nothing was taken."""

    why: str  # 'rate': no slot soon enough; 'lane': steps wait ahead; 'cap': in-flight cap full
    front: bool = False  # released from the lane once already: back at its head


@dataclass(frozen=True, slots=True)
class Park:
    """Wait in Redis until `due_at` (None: until the account is resumed)."""

    reason: ParkReason
    due_at: float | None
    detail: str
    error: dict[str, Any] | None = None
    stored: bool = False  # already in the parking lot (parked by the check that decided it)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Never send this job as it is; keep it for an operator."""

    reason: str
    error_class: ErrorClass
    code: int | None
    error: dict[str, Any] | None = None


Outcome = Sent | Duplicate | AlreadyDead | Retry | Queued | Park | DeadLetter
