"""The worker's own bookkeeping that travels with a step it publishes again, sealed so that no
producer can write it.

A step the worker publishes again (a retry, a parked step released, a step released from its
account's lane, the canary of a paused account) carries `_meta` in its kwargs: its attempt
history, whether it is the canary (`probe`: may pass the pause gate, and its send resumes the
account), and for a step released from a lane the rate-limit slot the feeder took for it
(`slot`: it skips the lane check and sends in that slot). Producers write kwargs too,
so `_meta` counts only when it bears a seal: HMAC-SHA256 under a key kept in the state Redis
(made once, by the first process that needs it), over the meta and the job it travels with. A
forged or copied `_meta` (a producer's `{"probe": true}`, the canary's meta on another job) does
not verify and is ignored: the step runs as a first attempt, which passes no gate it would not
pass anyway. A copy onto the very same job is that job again, which its idempotency key
deduplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import redis

from worker.state.keys import Keys

log = logging.getLogger(__name__)
META_FIELD = "_meta"
KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class StepMeta:
    """What only the worker decides about a step: earlier attempts, whether it is a canary,
    and whether (with which slot) a feeder released it from its lane."""

    history: tuple[dict[str, Any], ...] = ()
    probe: bool = False
    #: Released from a lane with this rate-limit slot (ms, Redis's clock; 0: none needed);
    #: None: not released from a lane.
    slot: int | None = None

    def with_error(self, error: dict[str, Any]) -> StepMeta:
        """This meta with one more failed attempt (the probe flag does not carry over)."""
        return StepMeta(history=(*self.history, error))


class MetaSeal:
    """Seals and opens `_meta` with a key shared by every worker through the state Redis."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._client = client
        self._key_name = keys.meta_seal()
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def seal(self, meta: StepMeta, job_kwargs: dict[str, Any]) -> dict[str, Any]:
        """`_meta` for a step published with `job_kwargs`. Never raises: with the key out of
        reach (the state Redis down before this process first read it) the meta goes unsealed
        and counts for nothing, so the step still goes out (as a first attempt)."""
        body: dict[str, Any] = {"history": list(meta.history), "probe": meta.probe}
        if meta.slot is not None:
            body["slot"] = meta.slot
        mac = self._mac_or_none(body, job_kwargs)
        return body if mac is None else {**body, "seal": mac}

    def open(self, raw: object, job_kwargs: dict[str, Any]) -> StepMeta:
        """The meta `raw` carries if this deployment sealed it for this job; else a first
        attempt's (logged when something unsealed was offered)."""
        if raw is None:
            return StepMeta()
        if isinstance(raw, dict) and isinstance(raw.get("seal"), str):
            history, probe, slot = raw.get("history"), raw.get("probe"), raw.get("slot")
            body: dict[str, Any] = {"history": history, "probe": probe}
            if "slot" in raw:
                body["slot"] = slot
            well_formed = (
                isinstance(history, list)
                and isinstance(probe, bool)
                and all(isinstance(h, dict) for h in history)
                and (slot is None or (isinstance(slot, int) and not isinstance(slot, bool)))
            )
            mac = self._mac_or_none(body, job_kwargs) if well_formed else None
            if mac is not None and hmac.compare_digest(raw["seal"], mac):
                return StepMeta(history=tuple(history), probe=probe, slot=slot)  # type: ignore[arg-type]
        log.warning("`%s` ignored: not sealed by this deployment for this job", META_FIELD)
        return StepMeta()

    def warm(self) -> None:
        """Read (or make) the key now, so that a later Redis outage does not find it unread."""
        self._mac_or_none({}, {})

    def _mac_or_none(self, body: dict[str, Any], job_kwargs: dict[str, Any]) -> str | None:
        try:
            secret = self._secret()
        except (redis.RedisError, OSError) as exc:
            log.warning("meta seal key unreadable (%s): meta not sealed", type(exc).__name__)
            return None
        text = json.dumps([body, job_kwargs], sort_keys=True, separators=(",", ":"), default=str)
        return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()

    def _secret(self) -> bytes:
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._client.set(self._key_name, secrets.token_hex(KEY_BYTES), nx=True)
                    stored = self._client.get(self._key_name)
                    if not stored:
                        raise redis.RedisError("the meta seal key vanished as it was made")
                    self._key = str(stored).encode()
        return self._key
