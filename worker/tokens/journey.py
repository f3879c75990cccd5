"""Journey-token store: one token per (account, phone, journey, token type), created exactly once.

A token is billed when its first message is sent, so a second token for the same journey is money
thrown away. Creation is single-flight across every process: one creator holds a lock (outliving
the HTTP call's timeout) while the others wait for the token to appear.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from pydantic import SecretStr

from worker.clock import Clock, ms
from worker.errors import ZaloTransportError
from worker.state.keys import Keys
from worker.state.locks import Lock
from worker.state.scripts import register
from worker.tokens.crypto import TokenCipher
from worker.zalo.models import JourneyToken

DAY_S = 86_400
#: Lifetime by token type (Zalo: 7 or 30 days). Never reuse past this, counted from *before* the
#: get-token call, so our idea of expiry is never later than Zalo's.
LIFETIME_S = {
    "token_logistics_7": 7 * DAY_S,
    "token_logistics_30": 30 * DAY_S,
    "token_coach_bus_7": 7 * DAY_S,
    "token_coach_bus_30": 30 * DAY_S,
}
POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class CachedToken:
    """A journey token as stored: the secret plus what we know of its life."""

    token: SecretStr
    journey_id: str
    created_at_ms: int
    expires_at_ms: int
    created_now: bool = False


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What an operator may see of a stored journey token: never the token itself."""

    token_type: str
    journey_id: str
    created_at_ms: int
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class TokenRef:
    """Which journey a token belongs to."""

    account: str
    phone: str
    journey: str
    token_type: str


class JourneyTokenStore:
    """Reuse while alive, create once, drop when Zalo rejects it."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        clock: Clock,
        lock_ttl_s: float,
        wait_s: float,
        min_life_s: float,
        cipher: TokenCipher | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock
        self._lock_ttl_s = lock_ttl_s
        self._wait_s = wait_s
        self._min_life_ms = int(min_life_s * 1000)
        self._cipher = cipher or TokenCipher(None)
        self._sleep = sleep
        self._drop = register(client, "journey_token_drop", package="worker.tokens")
        self._store = register(client, "journey_token_store", package="worker.tokens")

    def get(self, ref: TokenRef) -> CachedToken | None:
        """The stored token if it still has at least `min_life_s` to live."""
        raw: dict[str, str] = self._client.hgetall(self._key(ref))  # type: ignore[assignment]
        return self.from_fields(raw)

    def from_fields(self, raw: dict[str, str] | None) -> CachedToken | None:
        """A token from its stored fields (read here or by the hot path), if still alive."""
        if not raw or not raw.get("token"):
            return None
        cached = CachedToken(
            token=SecretStr(self._cipher.open(raw["token"])),
            journey_id=raw.get("journey_id", ""),
            created_at_ms=int(raw.get("created_at_ms", "0")),
            expires_at_ms=int(raw.get("expires_at_ms", "0")),
        )
        if cached.expires_at_ms - ms(self._clock()) < self._min_life_ms:
            return None
        return cached

    def get_or_create(
        self, ref: TokenRef, create: Callable[[], JourneyToken], *, known_missing: bool = False
    ) -> CachedToken:
        """The live token for `ref`, calling `create` at most once across all processes.
        `known_missing`: the caller just read that none is stored (`begin_step.lua`); go
        straight for the lock (under it, the store is read again)."""
        deadline = self._clock() + self._wait_s
        look = not known_missing
        while True:
            cached = self.get(ref) if look else None
            look = True
            if cached is not None:
                return cached
            lock = Lock(self._client, self._lock_key(ref), ttl_s=self._lock_ttl_s)
            if lock.acquire():
                return self._create_locked(ref, create, lock)
            if self._clock() >= deadline:
                raise ZaloTransportError(
                    "timed out waiting for another worker to create the journey token",
                    endpoint="/journey/get-token",
                )
            self._sleep(POLL_S)

    def drop(self, ref: TokenRef, journey_id: str) -> bool:
        """Forget a token Zalo rejected (-149/-150), unless another process already replaced it."""
        keys, args = journey_token_drop_args(self._key(ref), journey_id)
        return bool(self._drop(keys=keys, args=args))

    def _create_locked(
        self, ref: TokenRef, create: Callable[[], JourneyToken], lock: Lock
    ) -> CachedToken:
        """Create and store under `lock`; the store releases it (one round trip)."""
        created_at = self._clock()
        try:
            cached = self.get(ref)  # created while we waited for the lock?
            fresh = None if cached is not None else create()
        except BaseException:
            lock.release()
            raise
        if fresh is None:
            lock.release()
            assert cached is not None
            return cached
        expires_at_ms = ms(created_at + LIFETIME_S.get(ref.token_type, 7 * DAY_S))
        stored = CachedToken(
            token=fresh.token,
            journey_id=fresh.journey_id,
            created_at_ms=ms(created_at),
            expires_at_ms=expires_at_ms,
            created_now=True,
        )
        keys, args = journey_token_store_args(
            self._key(ref),
            lock.key,
            token=self._cipher.seal(fresh.token.get_secret_value()),
            journey_id=fresh.journey_id,
            created_at_ms=stored.created_at_ms,
            expires_at_ms=expires_at_ms,
            holder=lock.holder,
        )
        try:
            self._store(keys=keys, args=args)
        except BaseException:
            with contextlib.suppress(redis.RedisError, OSError):
                lock.release()
            raise
        return stored

    def info(self, account: str, phone: str, journey: str) -> list[TokenInfo]:
        """The journey's stored tokens, one per token type in use (the token is never read)."""
        refs = [TokenRef(account, phone, journey, token_type) for token_type in LIFETIME_S]
        with self._client.pipeline(transaction=False) as pipe:
            for ref in refs:
                pipe.hmget(self._key(ref), "journey_id", "created_at_ms", "expires_at_ms")
            replies: list[list[str | None]] = pipe.execute()
        return [
            TokenInfo(ref.token_type, jid, int(created or 0), int(expires or 0))
            for ref, (jid, created, expires) in zip(refs, replies, strict=True)
            if jid
        ]

    def key(self, ref: TokenRef) -> str:
        """The Redis key of `ref`'s token."""
        return self._key(ref)

    def _key(self, ref: TokenRef) -> str:
        return self._keys.journey_token(ref.account, ref.phone, ref.journey, ref.token_type)

    def _lock_key(self, ref: TokenRef) -> str:
        return self._keys.journey_token_lock(ref.account, ref.phone, ref.journey, ref.token_type)


def journey_token_drop_args(token_key: str, journey_id: str) -> tuple[list[str], list[str]]:
    """journey_token_drop.lua's KEYS and ARGV."""
    return [token_key], [journey_id]


def journey_token_store_args(
    token_key: str,
    lock_key: str,
    *,
    token: str,
    journey_id: str,
    created_at_ms: int,
    expires_at_ms: int,
    holder: str,
) -> tuple[list[str], list[str | int]]:
    """journey_token_store.lua's KEYS and ARGV (token: sealed if encryption is on)."""
    return [token_key, lock_key], [token, journey_id, created_at_ms, expires_at_ms, holder]
