"""SeenEvents: which webhook events were already recorded, so a redelivery is not stored twice."""

from __future__ import annotations

import redis

from worker.state.keys import Keys


class SeenEvents:
    """One key per event id and account (SET NX with a TTL); one round trip to claim."""

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl_s: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl_s = ttl_s

    def claim(self, account: str, event_id: str) -> bool:
        """True the first time this event is seen (within the TTL); False for a redelivery."""
        key = self._keys.webhook_event(account, event_id)
        return bool(self._client.set(key, "1", nx=True, ex=self._ttl_s))

    def forget(self, account: str, event_id: str) -> None:
        """Recording the event failed: let its redelivery through."""
        self._client.delete(self._keys.webhook_event(account, event_id))
