"""OA access tokens: kept per account in Redis, refreshed by exactly one process at a time.

The refresh token is single-use: every refresh returns a new pair and kills the old refresh token,
so two processes refreshing at once destroy the grant. Hence:

- Refreshes are single-flight under a lock that outlives the refresh call's own timeouts, and the
  new pair is persisted atomically (one MULTI/EXEC) before anyone uses it. A `generation` counter
  tells a waiter that someone else already refreshed the token it saw rejected.
- Proactive: every worker's maintenance pass refreshes a token past `refresh_at_fraction` of its
  life (one of them does; the others see the new generation).
- Reactive: a send rejected with -124/-216/-220 refreshes once, then retries.
- An OAuth error (any answer without `access_token`) never overwrites the working pair.
- **Outcome unknown** (timeout or disconnect after the request was written, or a 5xx): Zalo may
  have rotated the pair and we never saw the new one. Reusing the old refresh token then fails,
  and could look like token theft to Zalo. So the state is marked *in doubt* and no automatic
  refresh reuses that refresh token while the old access token still works (it stays valid until
  its own expiry). Only when there is nothing left to lose (the access token is rejected, or is in
  its last minutes) is one more attempt made; if it fails, the account is paused with the
  operator's way out: re-authorise the OA, then `zns token set`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis
from pydantic import SecretStr

from worker.clock import Clock, ms
from worker.errors import (
    AccessTokenError,
    AccountError,
    TransientApiError,
    ZaloError,
    ZaloOAuthError,
    ZaloTransportError,
)
from worker.metrics import TOKEN_REFRESHES
from worker.settings import AccountSettings
from worker.state.keys import Keys
from worker.state.locks import Lock
from worker.state.scripts import register
from worker.tokens.crypto import TokenCipher
from worker.zalo.models import AccessTokenPair

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Sends tried per step with successive access tokens before giving up on the account.
ACCESS_ROUNDS = 3

POLL_S = 0.05
DEFAULT_LIFETIME_S = 90_000  # Zalo's expires_in for a fresh OA access token (~25 h)
LAST_MINUTES_S = 600  # an in-doubt refresh is retried only this close to expiry
REAUTHORISE = "re-authorise the OA in Zalo, then run `zns token set --account {account}`"

Refresher = Callable[[AccountSettings, SecretStr], AccessTokenPair]
"""Calls Zalo's OAuth host: (account settings, refresh token) -> new pair."""


@dataclass(frozen=True, slots=True)
class AccessGrant:
    """The access token to use now, and which generation of the pair it belongs to."""

    token: SecretStr
    generation: int


@dataclass(frozen=True, slots=True)
class TokenStatus:
    """What an operator may see of an account's tokens (never the tokens)."""

    has_access_token: bool
    has_refresh_token: bool
    generation: int
    access_expires_at_ms: int | None
    refreshed_at_ms: int | None
    lifetime_s: int | None
    in_doubt_since_ms: int | None
    last_error: str | None
    refresh_failures: int


class RefreshInDoubt(ZaloTransportError):
    """An earlier refresh's outcome is unknown; refreshing again now could burn the grant."""


class AccessTokenManager:
    """Current access token per account; single-flight, proactive and reactive refresh."""

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
        refresh_at_fraction: float = 0.8,
        cipher: TokenCipher | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._keys = keys
        self._accounts = accounts
        self._refresher = refresher
        self._clock = clock
        self._lock_ttl_s = lock_ttl_s
        self._wait_s = wait_s
        self._fraction = refresh_at_fraction
        self._cipher = cipher or TokenCipher(None)
        self._sleep = sleep
        self._known_working: dict[str, int] = {}  # per process: highest generation seen working
        self._mark_working = register(client, "max_field", package="worker.tokens")

    # -- reading ---------------------------------------------------------------------------------

    def current(self, account: str) -> AccessGrant:
        """The live access token (bootstrapped from settings only when Redis holds none)."""
        grant = self._read(account)
        if grant is None:
            self._bootstrap(account)
            grant = self._read(account)
        if grant is None:
            raise ZaloOAuthError(
                f"no access token for account {account!r}: set ZNS_ACCESS_TOKEN and "
                f"ZNS_REFRESH_TOKEN (or the account's), or run `zns token set --account {account}`"
            )
        return grant

    def status(self, account: str) -> TokenStatus:
        """Expiry, age, last refresh, doubt and errors; never a token."""
        raw = self._state(account)
        return TokenStatus(
            has_access_token=bool(raw.get("access_token")),
            has_refresh_token=bool(raw.get("refresh_token")),
            generation=int(raw.get("generation") or 0),
            access_expires_at_ms=_int(raw.get("access_expires_at_ms")),
            refreshed_at_ms=_int(raw.get("refreshed_at_ms")),
            lifetime_s=_int(raw.get("lifetime_s")),
            in_doubt_since_ms=_int(raw.get("in_doubt_since_ms")),
            last_error=raw.get("last_error") or None,
            refresh_failures=int(raw.get("refresh_failures") or 0),
        )

    def from_stored(self, stored: str | None, generation: int) -> AccessGrant | None:
        """A grant from a token read elsewhere (the hot path's one Redis call)."""
        return AccessGrant(SecretStr(self._cipher.open(stored)), generation) if stored else None

    def call(
        self, account: str, fn: Callable[[AccessGrant], T], *, first: AccessGrant | None = None
    ) -> T:
        """Run `fn` with the access token; on rejection refresh (single-flight) and run it again.

        A fresh token may be rejected legitimately: it died again while this step waited. So up
        to `ACCESS_ROUNDS` generations are tried; if the last one rejected had worked for
        someone, tokens are just churning (a transient error: retry later); if it never worked
        anywhere, Zalo rejects fresh tokens: an account problem (the account is paused).
        """
        grant = first or self.current(account)
        for round_ in range(ACCESS_ROUNDS):
            try:
                result = fn(grant)
            except AccessTokenError as exc:
                if round_ == ACCESS_ROUNDS - 1:
                    raise self._rejected_too_often(account, grant, exc) from exc
                grant = self.refresh_after_rejection(account, grant)
            else:
                self._note_working(account, grant.generation)
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _rejected_too_often(
        self, account: str, grant: AccessGrant, exc: AccessTokenError
    ) -> ZaloError:
        if self.has_worked(account, grant.generation):
            return TransientApiError(
                f"access tokens expiring faster than this step could use them ({exc})",
                endpoint=exc.endpoint,
                code=exc.code,
            )
        return AccountError(
            f"access token rejected {ACCESS_ROUNDS} times, each time right after a refresh, "
            f"and never accepted ({exc})",
            endpoint=exc.endpoint,
            code=exc.code,
        )

    def _note_working(self, account: str, generation: int) -> None:
        """`mark_working` after a call that succeeded: a hint, never worth failing the call for
        (the call may have been a send Zalo accepted, and failing it would send it again)."""
        try:
            self.mark_working(account, generation)
        except (redis.RedisError, OSError) as exc:
            log.warning("could not record a working access token (%s)", type(exc).__name__)

    def mark_working(self, account: str, generation: int) -> None:
        """Record that a call succeeded with `generation` (one Redis write per generation and
        process): a later rejection of it is then an expiry, not an account problem."""
        if self._known_working.get(account, -1) >= generation:
            return
        keys, args = max_field_args(self._keys.oauth(account), "working_generation", generation)
        self._mark_working(keys=keys, args=args)
        self._known_working[account] = generation

    def has_worked(self, account: str, generation: int) -> bool:
        """Whether any process ever made a successful call with `generation` (or a later one)."""
        value = self._client.hget(self._keys.oauth(account), "working_generation")
        return value is not None and int(str(value)) >= generation

    # -- refreshing ------------------------------------------------------------------------------

    def refresh_after_rejection(self, account: str, rejected: AccessGrant) -> AccessGrant:
        """Zalo rejected `rejected`: refresh once across all processes, return the new token."""
        return self._single_flight(account, rejected.generation, nothing_to_lose=True)

    def refresh_if_due(self, account: str) -> bool:
        """Proactive refresh past `refresh_at_fraction` of the token's life; True if refreshed."""
        status = self.status(account)
        if not status.has_access_token or status.access_expires_at_ms is None:
            return False
        now_ms = ms(self._clock())
        lifetime_ms = (status.lifetime_s or DEFAULT_LIFETIME_S) * 1000
        due_ms = status.access_expires_at_ms - int((1 - self._fraction) * lifetime_ms)
        if now_ms < due_ms:
            return False
        last_minutes = now_ms >= status.access_expires_at_ms - LAST_MINUTES_S * 1000
        if status.in_doubt_since_ms is not None and not last_minutes:
            return False  # the old token still works: do not gamble the grant yet
        lock = Lock(self._client, self._keys.oauth_lock(account), ttl_s=self._lock_ttl_s)
        if not lock.acquire():
            return False  # another process is refreshing
        try:
            if self.status(account).generation != status.generation:
                return False
            self._refresh_locked(account, nothing_to_lose=last_minutes)
            return True
        finally:
            lock.release()

    def refresh_now(self, account: str, *, force: bool = False) -> AccessGrant:
        """An operator's refresh (single-flight); refuses while in doubt unless `force`."""
        return self._single_flight(account, self.current(account).generation, nothing_to_lose=force)

    def set_pair(
        self, account: str, *, access_token: SecretStr, refresh_token: SecretStr, expires_in_s: int
    ) -> AccessGrant:
        """Store a pair from a fresh OA authorisation (clears doubt and errors)."""
        generation = self.status(account).generation + 1
        pair = AccessTokenPair.model_validate(
            {
                "access_token": access_token,
                "refresh_token": refresh_token,
                "expires_in": expires_in_s,
            }
        )
        return self._persist(account, pair, generation)

    def _single_flight(self, account: str, seen: int, *, nothing_to_lose: bool) -> AccessGrant:
        deadline = self._clock() + self._wait_s
        while True:
            grant = self.current(account)
            if grant.generation != seen:
                return grant  # someone else refreshed already
            lock = Lock(self._client, self._keys.oauth_lock(account), ttl_s=self._lock_ttl_s)
            if lock.acquire():
                try:
                    grant = self.current(account)
                    if grant.generation != seen:
                        return grant
                    return self._refresh_locked(account, nothing_to_lose=nothing_to_lose)
                finally:
                    lock.release()
            if self._clock() >= deadline:
                raise ZaloTransportError("timed out waiting for another worker's token refresh")
            self._sleep(POLL_S)

    def _refresh_locked(self, account: str, *, nothing_to_lose: bool) -> AccessGrant:
        settings = self._accounts(account)
        status = self.status(account)
        if settings is None or not settings.app_id or settings.secret_key is None:
            raise ZaloOAuthError(f"account {account!r} has no app id / secret key to refresh with")
        raw_refresh = self._state(account).get("refresh_token")
        if not raw_refresh:
            raise ZaloOAuthError(f"account {account!r} has no refresh token: run `zns token set`")
        if status.in_doubt_since_ms is not None and not nothing_to_lose:
            raise RefreshInDoubt(
                f"the last refresh of {account!r} ended without an answer; not reusing its "
                "refresh token while the access token still works (`zns token status`)"
            )
        refresh_token = SecretStr(self._cipher.open(raw_refresh))
        try:
            pair = self._refresher(settings, refresh_token)
        except ZaloError as exc:
            self._record_failure(account, exc)
            explained = self._explained(
                account, exc, was_in_doubt=status.in_doubt_since_ms is not None
            )
            if explained is exc:
                raise
            raise explained from exc
        TOKEN_REFRESHES.labels(account=account, outcome="ok").inc()
        log.info("access token of %s refreshed (generation %d)", account, status.generation + 1)
        return self._persist(account, pair, status.generation + 1)

    def _record_failure(self, account: str, exc: ZaloError) -> None:
        key = self._keys.oauth(account)
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(key, "last_error", str(exc)[:300])
        pipe.hincrby(key, "refresh_failures", 1)
        if exc.outcome_unknown:
            pipe.hsetnx(key, "in_doubt_since_ms", ms(self._clock()))
        pipe.execute()
        outcome = "unknown" if exc.outcome_unknown else type(exc).__name__
        TOKEN_REFRESHES.labels(account=account, outcome=outcome).inc()
        log.error("refresh of the access token of %s failed: %s", account, exc)

    @staticmethod
    def _explained(account: str, exc: ZaloError, *, was_in_doubt: bool) -> ZaloError:
        if not isinstance(exc, ZaloOAuthError):
            return exc
        why = " (an earlier refresh's answer was lost: Zalo probably rotated the pair)"
        message = f"{exc}{why if was_in_doubt else ''}; {REAUTHORISE.format(account=account)}"
        return ZaloOAuthError(
            message, endpoint=exc.endpoint, code=exc.code, error_name=exc.error_name
        )

    # -- storage ---------------------------------------------------------------------------------

    def _persist(self, account: str, pair: AccessTokenPair, generation: int) -> AccessGrant:
        now = self._clock()
        key = self._keys.oauth(account)
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "access_token": self._cipher.seal(pair.access_token.get_secret_value()),
                "refresh_token": self._cipher.seal(pair.refresh_token.get_secret_value()),
                "access_expires_at_ms": ms(now + pair.expires_in_s),
                "lifetime_s": pair.expires_in_s,
                "refreshed_at_ms": ms(now),
                "generation": generation,
            },
        )
        pipe.hdel(key, "in_doubt_since_ms", "last_error")
        pipe.execute()
        return AccessGrant(pair.access_token, generation)

    def _state(self, account: str) -> dict[str, str]:
        raw: dict[str, str] = self._client.hgetall(self._keys.oauth(account))  # type: ignore[assignment]
        return raw

    def _read(self, account: str) -> AccessGrant | None:
        raw: list[str | None] = self._client.hmget(  # type: ignore[assignment]
            self._keys.oauth(account), ["access_token", "generation"]
        )
        token, generation = raw
        if not token:
            return None
        return AccessGrant(SecretStr(self._cipher.open(token)), int(generation or 0))

    def _bootstrap(self, account: str) -> None:
        """Seed Redis from settings, field by field with HSETNX: never overwrite a rotated pair."""
        settings = self._accounts(account)
        if settings is None or settings.access_token is None:
            return
        key = self._keys.oauth(account)
        pipe = self._client.pipeline(transaction=True)
        pipe.hsetnx(
            key, "access_token", self._cipher.seal(settings.access_token.get_secret_value())
        )
        if settings.refresh_token is not None:
            sealed = self._cipher.seal(settings.refresh_token.get_secret_value())
            pipe.hsetnx(key, "refresh_token", sealed)
        pipe.hsetnx(key, "generation", 0)
        pipe.hsetnx(key, "access_expires_at_ms", ms(self._clock() + DEFAULT_LIFETIME_S))
        pipe.execute()


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def max_field_args(hash_key: str, field: str, value: int) -> tuple[list[str], list[str | int]]:
    """max_field.lua's KEYS and ARGV."""
    return [hash_key], [field, value]
