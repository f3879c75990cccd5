"""Idempotency: claim a job's key before sending, record the result, recognise redeliveries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from worker.state.keys import Keys
from worker.state.scripts import register


class ClaimState(StrEnum):
    """What a claim attempt found."""

    CLAIMED = "claimed"  # ours now: go ahead
    SENT = "sent"  # already sent: return the stored result, call nothing
    DEAD = "dead"  # already dead-lettered: do nothing
    BUSY = "busy"  # another live claim: try again after it expires or finishes


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to a claim attempt."""

    state: ClaimState
    result: dict[str, Any] | None = None
    retry_after_s: float = 0.0


class IdempotencyStore:
    """Per-job state in Redis: claimed (with a ttl) -> sent | dead (kept for `retention_s`)."""

    def __init__(
        self, client: redis.Redis, keys: Keys, *, claim_ttl_s: float, retention_s: float
    ) -> None:
        self._keys = keys
        self._claim_ttl_ms = int(claim_ttl_s * 1000)
        self._retention_ms = int(retention_s * 1000)
        self._claim = register(client, "claim")
        self._finish = register(client, "finish")
        self._release = register(client, "release")
        self._reopen = register(client, "reopen")
        self._client = client

    def claim(self, account: str, key: str, *, owner: str) -> Claim:
        """Claim `key` for `owner` unless it is finished or held by a live claim."""
        reply = self._claim(
            keys=[self._keys.idempotency(account, key)], args=[owner, self._claim_ttl_ms]
        )
        state = ClaimState(_text(reply[0]))
        if state is ClaimState.BUSY:
            pttl_ms = max(int(_text(reply[1])), 0)
            return Claim(state, retry_after_s=pttl_ms / 1000)
        if state in (ClaimState.SENT, ClaimState.DEAD):
            payload = _text(reply[1]) if len(reply) > 1 else ""
            return Claim(state, result=json.loads(payload) if payload else None)
        return Claim(state)

    def mark_sent(self, account: str, key: str, *, owner: str, result: dict[str, Any]) -> bool:
        """Record the send (always: once Zalo accepted, `sent` is the truth)."""
        return self._finish_as(account, key, owner, "sent", result)

    def mark_dead(self, account: str, key: str, *, owner: str, result: dict[str, Any]) -> bool:
        """Record a dead letter so redeliveries of it do nothing."""
        return self._finish_as(account, key, owner, "dead", result)

    def release(self, account: str, key: str, *, owner: str) -> bool:
        """Give the claim back: nothing was sent, a later attempt may claim again."""
        return bool(self._release(keys=[self._keys.idempotency(account, key)], args=[owner]))

    def reopen(self, account: str, key: str) -> bool:
        """Forget a dead-lettered job so a replay may send it; False if it was sent or in flight."""
        return bool(self._reopen(keys=[self._keys.idempotency(account, key)]))

    def state(self, account: str, key: str) -> str | None:
        """The recorded state of `key`, if any."""
        value = self._client.hget(self._keys.idempotency(account, key), "state")
        return _text(value) if value is not None else None

    def _finish_as(
        self, account: str, key: str, owner: str, state: str, result: dict[str, Any]
    ) -> bool:
        args = [owner, state, json.dumps(result, separators=(",", ":")), self._retention_ms]
        return bool(self._finish(keys=[self._keys.idempotency(account, key)], args=args))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
