"""A Celery Request that never shows a full phone number (or our `_meta`) to events, Flower or
`celery inspect`, whatever the producer put in the message's `kwargsrepr`."""

from __future__ import annotations

from typing import Any

from celery.worker.request import Request

from worker.job import masked_kwargs_repr

POSITIONAL_HIDDEN = "(positional arguments hidden)"


class MaskedRequest(Request):
    """Masks the phone in the kwargs repr every worker-side view is built from."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        raw = getattr(self, "_kwargs", None)  # decoded by Celery from the message body
        self._kwargsrepr = masked_kwargs_repr(raw) if isinstance(raw, dict) else "{}"
        self._argsrepr = POSITIONAL_HIDDEN if getattr(self, "_args", None) else "()"

    def info(self, safe: bool = False) -> Any:
        """Celery's `inspect reserved/scheduled` asks without `safe`: answer safely anyway."""
        return super().info(safe=True)
