"""The journey view: one customer's journey as an operator or a billing team asks about it.

Journey id, token type, created and expiry times (from `worker/tokens/journey.py`, never the
token), every recorded step with its status (`worker/status.py`), and whether Zalo charged the
journey or let it time out (webhook events).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from worker.phone import mask_phone
from worker.state.step_status import StatusStore
from worker.status import StepState, StepStatus
from worker.tokens.journey import JourneyTokenStore, TokenInfo

DELIVERED = {StepState.DELIVERED.value}
SENT = {StepState.SENT.value, *DELIVERED}


@dataclass(frozen=True, slots=True)
class JourneyReport:
    """What we know of one (account, phone, journey)."""

    account: str
    phone: str  # masked
    journey: str  # masked when it is the phone
    tokens: list[TokenInfo]
    steps: list[StepStatus]
    events: dict[str, dict[str, int]]  # Zalo journey id -> charged_at_ms / timed_out_at_ms

    @property
    def sent(self) -> int:
        """Steps Zalo accepted."""
        return sum(1 for step in self.steps if step.state in SENT)

    @property
    def delivered(self) -> int:
        """Steps Zalo reported delivered."""
        return sum(1 for step in self.steps if step.state in DELIVERED)

    @property
    def charged(self) -> bool:
        """Zalo reported the journey acknowledged (billed)."""
        return any("charged_at_ms" in event for event in self.events.values())

    @property
    def timed_out(self) -> bool:
        """Zalo reported the journey timed out."""
        return any("timed_out_at_ms" in event for event in self.events.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "account": self.account,
            "phone": self.phone,
            "journey": self.journey,
            "tokens": [asdict(token) for token in self.tokens],
            "steps_sent": self.sent,
            "steps_delivered": self.delivered,
            "charged": self.charged,
            "timed_out": self.timed_out,
            "events": self.events,
            "steps": [step.as_dict() for step in self.steps],
        }


def journey_report(
    tokens: JourneyTokenStore, status: StatusStore, *, account: str, phone: str, journey: str
) -> JourneyReport:
    """Gather the view of a journey (`phone` normalised, `journey` as the producer named it)."""
    infos = tokens.info(account, phone, journey)
    steps = status.journey(account, phone, journey)
    journey_ids = {info.journey_id for info in infos}
    journey_ids.update(jid for step in steps if (jid := step.get("journey_id")))
    return JourneyReport(
        account=account,
        phone=mask_phone(phone),
        journey=mask_phone(journey) if journey == phone else journey,
        tokens=infos,
        steps=steps,
        events=status.journey_events(account, journey_ids),
    )
