"""Access-token manager against a real Redis: bootstrap, single-flight refresh, failures."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import redis
from pydantic import SecretStr

from tests.fakes import FakeClock, RecordingSleep, run_in_threads
from worker.clock import ms
from worker.errors import ZaloOAuthError, ZaloTimeout, ZaloTransportError
from worker.settings import AccountSettings, Settings
from worker.state.keys import Keys
from worker.state.locks import Lock
from worker.tokens.access import (
    DEFAULT_LIFETIME_S,
    POLL_S,
    AccessGrant,
    AccessTokenManager,
    RefreshInDoubt,
)
from worker.zalo.models import AccessTokenPair

ACCOUNT = "default"
WAIT_S = 5.0
EXPIRES_IN_S = 90_000


class FakeRefresher:
    """Stands in for the OAuth call: counts calls, records the refresh token it was given,
    returns pair n (`access-n`, `refresh-n`), or raises what it is told to."""

    def __init__(
        self,
        *,
        before_return: Callable[[], None] | None = None,
        error: Exception | None = None,
    ) -> None:
        self.calls = 0
        self.seen: list[tuple[str | None, str]] = []
        self._before_return = before_return
        self._error = error
        self._lock = threading.Lock()

    def __call__(self, account: AccountSettings, refresh_token: SecretStr) -> AccessTokenPair:
        with self._lock:
            self.calls += 1
            n = self.calls
            self.seen.append((account.app_id, refresh_token.get_secret_value()))
        if self._before_return is not None:
            self._before_return()
        if self._error is not None:
            raise self._error
        return AccessTokenPair(
            access_token=SecretStr(f"access-{n}"),
            refresh_token=SecretStr(f"refresh-{n}"),
            expires_in_s=EXPIRES_IN_S,
        )


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix)


def make_manager(
    client: redis.Redis,
    keys: Keys,
    *,
    accounts: Callable[[str], AccountSettings | None],
    refresher: FakeRefresher,
    clock: FakeClock,
    sleep: Callable[[float], None] | None = None,
) -> AccessTokenManager:
    return AccessTokenManager(
        client,
        keys,
        accounts=accounts,
        refresher=refresher,
        clock=clock,
        lock_ttl_s=30,
        wait_s=WAIT_S,
        sleep=sleep or RecordingSleep(clock),
    )


def only(account: AccountSettings) -> Callable[[str], AccountSettings | None]:
    """An accounts lookup that knows just `default`."""
    return lambda name: account if name == ACCOUNT else None


def token(grant: AccessGrant) -> str:
    return grant.token.get_secret_value()


# --- bootstrap --------------------------------------------------------------------------------


def test_bootstrap_seeds_redis_from_settings_when_it_holds_nothing(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    # Given an empty Redis and the sandbox credentials in settings
    manager = make_manager(
        client, keys, accounts=settings.account, refresher=FakeRefresher(), clock=clock
    )
    # When the current token is asked for
    grant = manager.current(ACCOUNT)
    # Then it is the configured one, generation 0, and the pair now lives in Redis
    assert (token(grant), grant.generation) == ("sandbox-access-token", 0)
    assert client.hgetall(keys.oauth(ACCOUNT)) == {
        "access_token": "sandbox-access-token",
        "refresh_token": "sandbox-refresh-token",
        "generation": "0",
        "access_expires_at_ms": str(ms(clock() + DEFAULT_LIFETIME_S)),
    }


def test_a_restart_with_stale_settings_never_overwrites_a_rotated_pair(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    # Given a process bootstrapped from settings and then refreshed (the env pair is now dead)
    refresher = FakeRefresher()
    first = make_manager(client, keys, accounts=settings.account, refresher=refresher, clock=clock)
    rotated = first.refresh_after_rejection(ACCOUNT, first.current(ACCOUNT))
    # When a process restarts with the same, stale, settings
    restarted = make_manager(
        client, keys, accounts=settings.account, refresher=refresher, clock=clock
    )
    grant = restarted.current(ACCOUNT)
    # Then it uses the rotated pair from Redis, and the rotated refresh token is kept
    assert grant == rotated
    assert (token(grant), grant.generation) == ("access-1", 1)
    assert client.hget(keys.oauth(ACCOUNT), "refresh_token") == "refresh-1"


def test_a_bootstrap_racing_a_refresh_never_overwrites_the_rotated_pair(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    # Given process A found Redis empty and is about to seed it from its (stale) settings, while
    # process B bootstraps and refreshes in between
    refresher = FakeRefresher()
    b = make_manager(client, keys, accounts=settings.account, refresher=refresher, clock=clock)
    interleaved: list[AccessGrant] = []

    def accounts_for_a(name: str) -> AccountSettings | None:
        if not interleaved:
            interleaved.append(b.refresh_after_rejection(ACCOUNT, b.current(ACCOUNT)))
        return settings.account(name)

    a = make_manager(client, keys, accounts=accounts_for_a, refresher=refresher, clock=clock)
    # When A finishes its bootstrap
    grant = a.current(ACCOUNT)
    # Then B's rotated pair survives whole: A's stale values were only set where nothing was
    assert interleaved
    assert grant == interleaved[0]
    assert client.hmget(keys.oauth(ACCOUNT), ["access_token", "refresh_token", "generation"]) == [
        "access-1",
        "refresh-1",
        "1",
    ]


def test_no_token_anywhere_is_an_oauth_error(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    manager = make_manager(
        client, keys, accounts=settings.account, refresher=FakeRefresher(), clock=clock
    )
    with pytest.raises(ZaloOAuthError, match="no access token for account 'unknown-oa'"):
        manager.current("unknown-oa")
    assert not client.exists(keys.oauth("unknown-oa"))


# --- refresh ----------------------------------------------------------------------------------


def test_refresh_uses_the_stored_refresh_token_and_persists_the_new_pair(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    # Given the bootstrapped pair was rejected by Zalo
    refresher = FakeRefresher()
    manager = make_manager(
        client, keys, accounts=settings.account, refresher=refresher, clock=clock
    )
    rejected = manager.current(ACCOUNT)
    clock.advance(100)
    # When it is refreshed
    fresh = manager.refresh_after_rejection(ACCOUNT, rejected)
    # Then the OAuth call got the app id and the stored refresh token, and the new pair is stored
    assert refresher.seen == [("sandbox-app", "sandbox-refresh-token")]
    assert (token(fresh), fresh.generation) == ("access-1", 1)
    assert client.hgetall(keys.oauth(ACCOUNT)) == {
        "access_token": "access-1",
        "refresh_token": "refresh-1",
        "generation": "1",
        "access_expires_at_ms": str(ms(clock() + EXPIRES_IN_S)),
        "lifetime_s": str(EXPIRES_IN_S),
        "refreshed_at_ms": str(ms(clock())),
    }
    assert manager.current(ACCOUNT) == fresh


def test_each_refresh_bumps_the_generation_and_uses_the_latest_refresh_token(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    refresher = FakeRefresher()
    manager = make_manager(
        client, keys, accounts=settings.account, refresher=refresher, clock=clock
    )
    generations = [manager.current(ACCOUNT).generation]
    for _ in range(3):
        generations.append(
            manager.refresh_after_rejection(ACCOUNT, manager.current(ACCOUNT)).generation
        )
    assert generations == [0, 1, 2, 3]
    assert [seen[1] for seen in refresher.seen] == [
        "sandbox-refresh-token",
        "refresh-1",
        "refresh-2",
    ]


def test_a_stale_rejection_returns_the_newer_token_without_refreshing(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    # Given worker A refreshed already, while worker B still held the old token
    refresher = FakeRefresher()
    manager = make_manager(
        client, keys, accounts=settings.account, refresher=refresher, clock=clock
    )
    old = manager.current(ACCOUNT)
    manager.refresh_after_rejection(ACCOUNT, old)
    # When B reports the old token rejected
    grant = manager.refresh_after_rejection(ACCOUNT, old)
    # Then B gets the new token, and the single-use refresh token is not spent twice
    assert (token(grant), grant.generation) == ("access-1", 1)
    assert refresher.calls == 1


def test_a_stale_rejection_does_not_wait_for_a_refresh_in_progress(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    # Given the token was refreshed already, and another process is refreshing again right now
    refresher = FakeRefresher()
    sleep = RecordingSleep(clock)
    manager = make_manager(
        client, keys, accounts=settings.account, refresher=refresher, clock=clock, sleep=sleep
    )
    old = manager.current(ACCOUNT)
    newer = manager.refresh_after_rejection(ACCOUNT, old)
    assert Lock(client, keys.oauth_lock(ACCOUNT), ttl_s=60).acquire()
    # When a worker reports the old token rejected
    grant = manager.refresh_after_rejection(ACCOUNT, old)
    # Then it gets the newer token at once, without queueing behind the lock
    assert grant == newer
    assert sleep.calls == []
    assert refresher.calls == 1


def test_twenty_threads_refresh_exactly_once(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    # Given 20 threads that all saw the same token rejected, and an OAuth call that lasts until
    # the 19 others are waiting on it
    sleep = RecordingSleep(real_s=0.001)
    all_waiting = threading.Event()

    def hold_until_others_wait() -> None:
        if sleep.wait_for_sleepers(19, timeout_s=10):
            all_waiting.set()

    refresher = FakeRefresher(before_return=hold_until_others_wait)
    manager = make_manager(
        client, keys, accounts=settings.account, refresher=refresher, clock=clock, sleep=sleep
    )
    rejected = manager.current(ACCOUNT)
    # When they all refresh at once
    grants = run_in_threads(20, lambda _: manager.refresh_after_rejection(ACCOUNT, rejected))
    # Then Zalo's OAuth host was called once and every thread has the new token
    assert refresher.calls == 1
    assert all_waiting.is_set()
    assert {(token(g), g.generation) for g in grants} == {("access-1", 1)}


def test_waiter_gives_up_with_a_transient_error_when_the_refresher_hangs(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    # Given another process holds the refresh lock and never finishes
    refresher = FakeRefresher()
    sleep = RecordingSleep(clock)
    manager = make_manager(
        client, keys, accounts=settings.account, refresher=refresher, clock=clock, sleep=sleep
    )
    rejected = manager.current(ACCOUNT)
    assert Lock(client, keys.oauth_lock(ACCOUNT), ttl_s=60).acquire()
    start = clock()
    # When this one needs the refreshed token
    with pytest.raises(ZaloTransportError, match="timed out") as info:
        manager.refresh_after_rejection(ACCOUNT, rejected)
    # Then it gives up after wait_s with a retryable error and never refreshed itself
    assert info.value.transient
    assert refresher.calls == 0
    assert clock() - start == pytest.approx(WAIT_S, abs=POLL_S)
    assert set(sleep.calls) == {POLL_S}


# --- refusals and failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "message"),
    [
        (
            AccountSettings(
                app_id="app",
                secret_key=SecretStr("secret"),
                access_token=SecretStr("access-0"),
            ),
            "no refresh token",
        ),
        (
            AccountSettings(
                secret_key=SecretStr("secret"),
                access_token=SecretStr("access-0"),
                refresh_token=SecretStr("refresh-0"),
            ),
            "no app id",
        ),
        (
            AccountSettings(
                app_id="app",
                access_token=SecretStr("access-0"),
                refresh_token=SecretStr("refresh-0"),
            ),
            "secret key",
        ),
    ],
)
def test_refresh_without_credentials_is_an_oauth_error(
    client: redis.Redis, keys: Keys, clock: FakeClock, account: AccountSettings, message: str
) -> None:
    # Given an account that cannot refresh
    refresher = FakeRefresher()
    manager = make_manager(client, keys, accounts=only(account), refresher=refresher, clock=clock)
    rejected = manager.current(ACCOUNT)
    # When its token is rejected
    with pytest.raises(ZaloOAuthError, match=message):
        manager.refresh_after_rejection(ACCOUNT, rejected)
    # Then nobody called Zalo, the stored token is unchanged and the lock is free again
    assert refresher.calls == 0
    assert manager.current(ACCOUNT) == rejected
    assert not client.exists(keys.oauth_lock(ACCOUNT))


PAIR_FIELDS = ("access_token", "refresh_token", "generation", "access_expires_at_ms")


def pair_of(client: redis.Redis, keys: Keys) -> list[str | None]:
    return list(client.hmget(keys.oauth(ACCOUNT), PAIR_FIELDS))  # type: ignore[arg-type]


def test_oauth_error_keeps_the_pair_and_tells_the_operator_what_to_do(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    # Given Zalo refuses the refresh token (HTTP 200, no access_token)
    error = ZaloOAuthError("Invalid refresh token", code=-14014, endpoint="/v4/oa/access_token")
    manager = make_manager(
        client, keys, accounts=settings.account, refresher=FakeRefresher(error=error), clock=clock
    )
    rejected = manager.current(ACCOUNT)
    before = pair_of(client, keys)
    # When a refresh is attempted
    with pytest.raises(ZaloOAuthError, match="zns token set --account default") as info:
        manager.refresh_after_rejection(ACCOUNT, rejected)
    assert info.value.__cause__ is error and info.value.code == -14014
    # Then the pair is untouched, the failure is recorded, and the lock is free again
    assert pair_of(client, keys) == before
    status = manager.status(ACCOUNT)
    assert status.refresh_failures == 1 and status.last_error == "Invalid refresh token"
    assert status.in_doubt_since_ms is None
    assert not client.exists(keys.oauth_lock(ACCOUNT))


def test_unknown_outcome_puts_the_pair_in_doubt_and_blocks_blind_reuse(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    # Given a refresh whose answer was lost (read timeout after the request went out)
    error = ZaloTimeout("read timeout", endpoint="/v4/oa/access_token")
    failing = FakeRefresher(error=error)
    manager = make_manager(client, keys, accounts=settings.account, refresher=failing, clock=clock)
    rejected = manager.current(ACCOUNT)
    before = pair_of(client, keys)
    with pytest.raises(ZaloTimeout) as info:
        manager.refresh_after_rejection(ACCOUNT, rejected)
    assert info.value is error
    assert pair_of(client, keys) == before
    assert manager.status(ACCOUNT).in_doubt_since_ms == ms(clock())
    # Then an operator's refresh without --force refuses to reuse the refresh token
    working = FakeRefresher()
    careful = make_manager(client, keys, accounts=settings.account, refresher=working, clock=clock)
    with pytest.raises(RefreshInDoubt):
        careful.refresh_now(ACCOUNT)
    assert working.calls == 0
    # And a proactive refresh waits while the old access token still works
    clock.advance(0.9 * DEFAULT_LIFETIME_S)
    assert careful.refresh_if_due(ACCOUNT) is False
    assert working.calls == 0
    # But when Zalo rejects the access token there is nothing to lose: one attempt, which clears it
    assert token(careful.refresh_after_rejection(ACCOUNT, rejected)) == "access-1"
    assert working.calls == 1
    assert careful.status(ACCOUNT).in_doubt_since_ms is None


def test_proactive_refresh_after_the_configured_share_of_life(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    refresher = FakeRefresher()
    manager = make_manager(
        client, keys, accounts=settings.account, refresher=refresher, clock=clock
    )
    manager.current(ACCOUNT)  # bootstrap: assumed fresh, ~25 h of life
    clock.advance(0.79 * DEFAULT_LIFETIME_S)
    assert manager.refresh_if_due(ACCOUNT) is False
    clock.advance(0.02 * DEFAULT_LIFETIME_S)
    assert manager.refresh_if_due(ACCOUNT) is True
    assert refresher.calls == 1
    assert manager.refresh_if_due(ACCOUNT) is False  # the new token is young
    assert manager.status(ACCOUNT).generation == 1


def test_set_pair_stores_a_fresh_authorisation_and_clears_doubt(
    client: redis.Redis, keys: Keys, settings: Settings, clock: FakeClock
) -> None:
    manager = make_manager(
        client, keys, accounts=settings.account, refresher=FakeRefresher(), clock=clock
    )
    manager.current(ACCOUNT)
    client.hset(keys.oauth(ACCOUNT), mapping={"in_doubt_since_ms": 1, "last_error": "x"})
    grant = manager.set_pair(
        ACCOUNT,
        access_token=SecretStr("a-new"),
        refresh_token=SecretStr("r-new"),
        expires_in_s=90000,
    )
    assert (token(grant), grant.generation) == ("a-new", 1)
    status = manager.status(ACCOUNT)
    assert status.in_doubt_since_ms is None and status.last_error is None
    assert status.access_expires_at_ms == ms(clock() + 90000)
