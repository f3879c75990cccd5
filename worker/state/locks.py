"""A small Redis lock with an owner token: acquire with NX + ttl, release only if still ours.

Used for single-flight work (creating a journey token, refreshing an access token). The ttl must
outlive the guarded call's own timeout, or a second process could enter while the first still works.
"""

from __future__ import annotations

import secrets

import redis

from worker.state.scripts import register


class Lock:
    """One named lock."""

    def __init__(self, client: redis.Redis, key: str, *, ttl_s: float) -> None:
        self._client = client
        self._key = key
        self._ttl_ms = int(ttl_s * 1000)
        self._token = secrets.token_hex(8)
        self._unlock = register(client, "unlock")

    @property
    def key(self) -> str:
        """The lock's Redis key."""
        return self._key

    @property
    def holder(self) -> str:
        """This lock's owner token (what a script releasing it checks)."""
        return self._token

    def acquire(self) -> bool:
        """Take the lock if free; never waits."""
        return bool(self._client.set(self._key, self._token, nx=True, px=self._ttl_ms))

    def release(self) -> bool:
        """Release if still held by us (an expired lock taken by another is left alone)."""
        keys, args = unlock_args(self._key, self._token)
        return bool(self._unlock(keys=keys, args=args))


def unlock_args(lock_key: str, holder: str) -> tuple[list[str], list[str]]:
    """unlock.lua's KEYS and ARGV."""
    return [lock_key], [holder]
