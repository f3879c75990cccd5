"""Idempotency: a job's final state, the claim given back, a dead letter reopened for replay.

The claim itself is taken in `begin_step.lua` (`StepGate.begin`) and a send recorded by
`finish_sent.lua` (`StepGate.finish_sent`), each with the same Lua functions (`lua/lib/claim.lua`,
`lua/lib/finish.lua`); this store does the rest of the key's life.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from worker.state.keys import Keys
from worker.state.scripts import register


class IdempotencyStore:
    """Per-job state in Redis: claimed (with a ttl) -> sent | dead (kept for `retention_s`)."""

    def __init__(self, client: redis.Redis, keys: Keys, *, retention_s: float) -> None:
        self._keys = keys
        self._retention_ms = int(retention_s * 1000)
        self._finish = register(client, "finish")
        self._release = register(client, "release")
        self._reopen = register(client, "reopen")
        self._client = client

    def mark_dead(self, account: str, key: str, *, owner: str, result: dict[str, Any]) -> bool:
        """Record a dead letter so redeliveries of it do nothing."""
        return self._finish_as(account, key, owner, "dead", result)

    def release(self, account: str, key: str, *, owner: str) -> bool:
        """Give the claim back: nothing was sent, a later attempt may claim again."""
        keys, args = release_args(self._keys, account, key, owner=owner)
        return bool(self._release(keys=keys, args=args))

    def reopen(self, account: str, key: str) -> bool:
        """Forget a dead-lettered job so a replay may send it; False if it was sent or in flight."""
        keys, args = reopen_args(self._keys, account, key)
        return bool(self._reopen(keys=keys, args=args))

    def state(self, account: str, key: str) -> str | None:
        """The recorded state of `key`, if any."""
        value = self._client.hget(self._keys.idempotency(account, key), "state")
        return _text(value) if value is not None else None

    def _finish_as(
        self, account: str, key: str, owner: str, state: str, result: dict[str, Any]
    ) -> bool:
        keys, args = finish_args(
            self._keys,
            account,
            key,
            owner=owner,
            final=state,
            result=result,
            retention_ms=self._retention_ms,
        )
        return bool(self._finish(keys=keys, args=args))


def finish_args(
    keys: Keys,
    account: str,
    key: str,
    *,
    owner: str,
    final: str,
    result: dict[str, Any],
    retention_ms: int,
) -> tuple[list[str], list[str | int]]:
    """finish.lua's KEYS and ARGV (final: 'sent' | 'dead')."""
    result_json = json.dumps(result, separators=(",", ":"))
    return [keys.idempotency(account, key), keys.inflight(account)], [
        owner,
        final,
        result_json,
        retention_ms,
    ]


def release_args(keys: Keys, account: str, key: str, *, owner: str) -> tuple[list[str], list[str]]:
    """release.lua's KEYS and ARGV."""
    return [keys.idempotency(account, key), keys.inflight(account)], [owner]


def reopen_args(keys: Keys, account: str, key: str) -> tuple[list[str], list[str]]:
    """reopen.lua's KEYS (it takes no ARGV)."""
    return [keys.idempotency(account, key)], []


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
