"""Step status, the words: where a journey step is in its life, and how to look one up.

    enqueued (producer) ─► parked (waiting) ─► sent ─► delivered (webhook)
                                           └─► dead_lettered (reason)

The store that records and reads it is `worker/state/step_status.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

INT_FIELDS = frozenset({"step", "dead_code"})


class ParkReason(StrEnum):
    """Why a job waits."""

    QUOTA = "quota"  # the OA's daily quota is used up
    TEMPLATE_QUOTA = "template_quota"  # this template's daily limit (-147)
    NIGHT = "night"  # -133: no sending 22:00-06:00
    PAUSED = "paused"  # the account needs a human
    BUSY = "busy"  # another worker holds the job's claim
    ORDER = "order"  # a lower step of the same journey is not sent yet (worker/state/ordering.py)


class StepState(StrEnum):
    """Where a step is in its life (a state only moves forward)."""

    ENQUEUED = "enqueued"
    PARKED = "parked"
    SENT = "sent"
    DEAD_LETTERED = "dead_lettered"
    DELIVERED = "delivered"


class Lookup(StrEnum):
    """What `StatusStore.get` looks a step up by."""

    IDEMPOTENCY_KEY = "idempotency-key"
    TRACKING_ID = "tracking-id"
    MSG_ID = "msg-id"


@dataclass(frozen=True, slots=True)
class StepStatus:
    """One step as recorded (times in epoch ms; the phone masked)."""

    state: str
    fields: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: numbers as numbers, empty fields left out."""
        out: dict[str, Any] = {"state": self.state}
        for name, value in sorted(self.fields.items()):
            if value == "" or name == "state":
                continue
            numeric = name.endswith("_ms") or name in INT_FIELDS
            out[name] = int(value) if numeric and _is_int(value) else value
        return out

    def get(self, name: str) -> str | None:
        """A field, None when empty or absent."""
        return self.fields.get(name) or None


def _is_int(value: str) -> bool:
    return value.lstrip("-").isdigit()
