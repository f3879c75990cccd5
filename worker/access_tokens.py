"""OA access tokens: kept per account in Redis, refreshed by exactly one process at a time.

The refresh token is single-use: every refresh returns a new pair and kills the old refresh token,
so two processes refreshing at once destroy the grant. Refreshes are single-flight under a lock
that outlives the refresh call's own timeout, and the new pair is persisted atomically (one
MULTI/EXEC) before anyone uses it. A `generation` counter tells a waiter that someone else already
refreshed the token it saw rejected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from pydantic import SecretStr

from worker.clock import Clock, ms
from worker.errors import ZaloOAuthError, ZaloTransportError
from worker.keys import Keys
from worker.locks import Lock
from worker.settings import AccountSettings
from worker.zalo.models import AccessTokenPair

POLL_S = 0.05
BOOTSTRAP_LIFETIME_S = 90_000  # Zalo's expires_in for a fresh OA access token (~25 h)

Refresher = Callable[[AccountSettings, SecretStr], AccessTokenPair]
"""Calls Zalo's OAuth host: (account settings, refresh token) -> new pair."""


@dataclass(frozen=True, slots=True)
class AccessGrant:
    """The access token to use now, and which generation of the pair it belongs to."""

    token: SecretStr
    generation: int


class AccessTokenManager:
    """Current access token per account; single-flight refresh after a rejection."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        accounts: Callable[[str], AccountSettings | None],
        refresher: Refresher,
        clock: Clock,
        lock_ttl_s: float,
        wait_s: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._keys = keys
        self._accounts = accounts
        self._refresher = refresher
        self._clock = clock
        self._lock_ttl_s = lock_ttl_s
        self._wait_s = wait_s
        self._sleep = sleep

    def current(self, account: str) -> AccessGrant:
        """The live access token (bootstrapped from settings only when Redis holds none)."""
        grant = self._read(account)
        if grant is None:
            self._bootstrap(account)
            grant = self._read(account)
        if grant is None:
            raise ZaloOAuthError(
                f"no access token for account {account!r}: set ZNS_ACCESS_TOKEN "
                "(or the account's ACCESS_TOKEN) and restart, or run `zns token set`"
            )
        return grant

    def refresh_after_rejection(self, account: str, rejected: AccessGrant) -> AccessGrant:
        """Zalo rejected `rejected`: refresh once across all processes, return the new token."""
        deadline = self._clock() + self._wait_s
        while True:
            grant = self.current(account)
            if grant.generation != rejected.generation:
                return grant  # someone else refreshed already
            lock = Lock(self._client, self._keys.oauth_lock(account), ttl_s=self._lock_ttl_s)
            if lock.acquire():
                try:
                    return self._refresh_locked(account, rejected)
                finally:
                    lock.release()
            if self._clock() >= deadline:
                raise ZaloTransportError("timed out waiting for another worker's token refresh")
            self._sleep(POLL_S)

    def _refresh_locked(self, account: str, rejected: AccessGrant) -> AccessGrant:
        grant = self.current(account)
        if grant.generation != rejected.generation:
            return grant
        settings = self._accounts(account)
        refresh_token = self._client.hget(self._keys.oauth(account), "refresh_token")
        if settings is None or not settings.app_id or settings.secret_key is None:
            raise ZaloOAuthError(f"account {account!r} has no app id / secret key to refresh with")
        if not refresh_token:
            raise ZaloOAuthError(f"account {account!r} has no refresh token: run `zns token set`")
        pair = self._refresher(settings, SecretStr(str(refresh_token)))
        return self._persist(account, pair, rejected.generation + 1)

    def _persist(self, account: str, pair: AccessTokenPair, generation: int) -> AccessGrant:
        now = self._clock()
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(
            self._keys.oauth(account),
            mapping={
                "access_token": pair.access_token.get_secret_value(),
                "refresh_token": pair.refresh_token.get_secret_value(),
                "access_expires_at_ms": ms(now + pair.expires_in_s),
                "refreshed_at_ms": ms(now),
                "generation": generation,
            },
        )
        pipe.execute()
        return AccessGrant(pair.access_token, generation)

    def _read(self, account: str) -> AccessGrant | None:
        raw: list[str | None] = self._client.hmget(  # type: ignore[assignment]
            self._keys.oauth(account), ["access_token", "generation"]
        )
        token, generation = raw
        if not token:
            return None
        return AccessGrant(SecretStr(token), int(generation or 0))

    def _bootstrap(self, account: str) -> None:
        """Seed Redis from settings, field by field with HSETNX: never overwrite a rotated pair."""
        settings = self._accounts(account)
        if settings is None or settings.access_token is None:
            return
        key = self._keys.oauth(account)
        pipe = self._client.pipeline(transaction=True)
        pipe.hsetnx(key, "access_token", settings.access_token.get_secret_value())
        if settings.refresh_token is not None:
            pipe.hsetnx(key, "refresh_token", settings.refresh_token.get_secret_value())
        pipe.hsetnx(key, "generation", 0)
        pipe.hsetnx(key, "access_expires_at_ms", ms(self._clock() + BOOTSTRAP_LIFETIME_S))
        pipe.execute()
