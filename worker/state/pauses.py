"""Account pause state: an account needing a human parks all its jobs until resumed."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from worker.clock import Clock, ms
from worker.state.keys import Keys


@dataclass(frozen=True, slots=True)
class Pause:
    """Why and since when an account is paused."""

    reason: str
    code: int | None
    since_ms: int


class AccountState:
    """Pause / resume / status per account, shared by every process."""

    def __init__(self, client: redis.Redis, keys: Keys, *, clock: Clock) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock

    def pause(self, account: str, *, reason: str, code: int | None = None) -> bool:
        """Pause the account; returns False when it was already paused (the first reason stays)."""
        key = self._keys.paused(account)
        fields = {"reason": reason, "code": "" if code is None else str(code)}
        fields["since_ms"] = str(ms(self._clock()))
        pipe = self._client.pipeline()
        pipe.hsetnx(key, "since_ms", fields["since_ms"])
        pipe.hsetnx(key, "reason", fields["reason"])
        pipe.hsetnx(key, "code", fields["code"])
        created = pipe.execute()[0]
        return bool(created)

    def resume(self, account: str) -> bool:
        """Lift the pause; returns False when it was not paused."""
        return bool(self._client.delete(self._keys.paused(account)))

    def status(self, account: str) -> Pause | None:
        """The pause, or None when the account is active."""
        raw = self._client.hgetall(self._keys.paused(account))
        if not raw:
            return None
        data: dict[str, str] = {str(k): str(v) for k, v in raw.items()}
        code = data.get("code") or ""
        return Pause(
            reason=data.get("reason", ""),
            code=int(code) if code else None,
            since_ms=int(data.get("since_ms", "0")),
        )
