"""A Celery Request that turns malformed headers into a dead letter (not a dead consumer) and
never shows a full phone number (or our `_meta`) to events, Flower or `celery inspect`,
whatever the producer put in the message's `kwargsrepr`."""

from __future__ import annotations

from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.request import Request

from worker.job import masked_kwargs_repr

POSITIONAL_HIDDEN = "(positional arguments hidden)"


class MaskedRequest(Request):
    """Masks the phone in the kwargs repr every worker-side view is built from."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            # Celery would let a malformed header (e.g. an eta it cannot parse) kill the
            # consumer; as InvalidTaskError the message becomes a dead letter instead.
            raise InvalidTaskError(f"malformed task message: {type(exc).__name__}: {exc}") from exc
        raw = getattr(self, "_kwargs", None)  # decoded by Celery from the message body
        self._kwargsrepr = masked_kwargs_repr(raw) if isinstance(raw, dict) else "{}"
        self._argsrepr = POSITIONAL_HIDDEN if getattr(self, "_args", None) else "()"

    def info(self, safe: bool = False) -> Any:
        """Celery's `inspect reserved/scheduled` asks without `safe`: answer safely anyway."""
        return super().info(safe=True)
