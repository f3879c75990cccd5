"""Journey-token store against a real Redis: create once, reuse, expiry by type, drop, waiting."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import redis
from pydantic import SecretStr

from tests.fakes import FakeClock, RecordingSleep, run_in_threads
from worker.clock import ms
from worker.errors import ZaloTransportError
from worker.state.keys import Keys
from worker.state.locks import Lock
from worker.tokens.journey import DAY_S, POLL_S, CachedToken, JourneyTokenStore, TokenRef
from worker.zalo.models import JourneyToken

REF = TokenRef("default", "84987654321", "order-42", "token_logistics_7")
MIN_LIFE_S = 300.0
WAIT_S = 5.0


class FakeCreate:
    """Stands in for `ZaloClient.get_journey_token`: counts calls, numbers its tokens."""

    def __init__(self, *, before_return: Callable[[], None] | None = None) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        self._before_return = before_return

    def __call__(self) -> JourneyToken:
        with self._lock:
            self.calls += 1
            n = self.calls
        if self._before_return is not None:
            self._before_return()
        return JourneyToken(token=SecretStr(f"jt-secret-{n}"), journey_id=f"journey-{n}")


def make_store(
    client: redis.Redis, keys: Keys, clock: FakeClock, sleep: Callable[[float], None]
) -> JourneyTokenStore:
    return JourneyTokenStore(
        client,
        keys,
        clock=clock,
        lock_ttl_s=30,
        wait_s=WAIT_S,
        min_life_s=MIN_LIFE_S,
        sleep=sleep,
    )


@pytest.fixture
def store(client: redis.Redis, keys: Keys, clock: FakeClock) -> JourneyTokenStore:
    return make_store(client, keys, clock, RecordingSleep(clock))


def secret(token: CachedToken) -> str:
    return token.token.get_secret_value()


def test_first_call_creates_then_the_token_is_reused(store: JourneyTokenStore) -> None:
    # Given no token for this journey
    create = FakeCreate()
    # When two steps of the journey ask in turn
    first = store.get_or_create(REF, create)
    second = store.get_or_create(REF, create)
    # Then Zalo was asked once, and the second step reuses the stored token
    assert create.calls == 1
    assert first.created_now
    assert not second.created_now
    assert (secret(second), second.journey_id) == ("jt-secret-1", "journey-1")
    assert (second.created_at_ms, second.expires_at_ms) == (
        first.created_at_ms,
        first.expires_at_ms,
    )


def test_thirty_threads_at_once_create_exactly_one_token(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    # Given 30 steps of one journey arriving at once, and a get-token call that takes until
    # every other thread is waiting for it
    sleep = RecordingSleep(real_s=0.001)
    store = make_store(client, keys, clock, sleep)
    all_waiting = threading.Event()

    def hold_until_others_wait() -> None:
        if sleep.wait_for_sleepers(29, timeout_s=10):
            all_waiting.set()

    create = FakeCreate(before_return=hold_until_others_wait)
    # When they all get_or_create
    tokens = run_in_threads(30, lambda _: store.get_or_create(REF, create))
    # Then Zalo was called once and every step got that one token
    assert create.calls == 1
    assert all_waiting.is_set()
    assert {(secret(t), t.journey_id) for t in tokens} == {("jt-secret-1", "journey-1")}
    assert sum(t.created_now for t in tokens) == 1


def test_tokens_are_per_phone_journey_and_type(store: JourneyTokenStore) -> None:
    create = FakeCreate()
    refs = [
        REF,
        TokenRef("default", "84912345678", REF.journey, REF.token_type),
        TokenRef("default", REF.phone, "order-43", REF.token_type),
        TokenRef("default", REF.phone, REF.journey, "token_logistics_30"),
        TokenRef("other-oa", REF.phone, REF.journey, REF.token_type),
    ]
    ids = {store.get_or_create(ref, create).journey_id for ref in refs}
    assert create.calls == len(refs)
    assert len(ids) == len(refs)


@pytest.mark.parametrize(
    ("token_type", "lifetime_days"),
    [
        ("token_logistics_7", 7),
        ("token_logistics_30", 30),
        ("token_coach_bus_7", 7),
        ("token_coach_bus_30", 30),
        ("some_future_type", 7),  # unknown: the shorter, safe lifetime
    ],
)
def test_expiry_is_stored_from_the_types_lifetime(
    client: redis.Redis, keys: Keys, clock: FakeClock, token_type: str, lifetime_days: int
) -> None:
    # Given the get-token call takes 3 s
    store = make_store(client, keys, clock, RecordingSleep(clock))
    ref = TokenRef(REF.account, REF.phone, REF.journey, token_type)
    before_call = clock()
    create = FakeCreate(before_return=lambda: clock.advance(3))
    # When the token is created
    token = store.get_or_create(ref, create)
    # Then its life is counted from *before* the call, so ours never outlives Zalo's
    expected = ms(before_call + lifetime_days * DAY_S)
    assert token.created_at_ms == ms(before_call)
    assert token.expires_at_ms == expected
    key = keys.journey_token(ref.account, ref.phone, ref.journey, ref.token_type)
    assert client.hgetall(key) == {
        "token": "jt-secret-1",
        "journey_id": "journey-1",
        "created_at_ms": str(ms(before_call)),
        "expires_at_ms": str(expected),
    }
    assert int(client.pexpiretime(key)) == expected  # Redis forgets it when Zalo does


def test_reused_while_at_least_min_life_remains(store: JourneyTokenStore, clock: FakeClock) -> None:
    create = FakeCreate()
    first = store.get_or_create(REF, create)
    # When the clock reaches exactly min_life before expiry
    clock.set(first.expires_at_ms / 1000 - MIN_LIFE_S)
    # Then the token is still reused
    assert store.get_or_create(REF, create).journey_id == "journey-1"
    assert create.calls == 1


def test_not_reused_when_less_than_min_life_remains(
    store: JourneyTokenStore, clock: FakeClock
) -> None:
    # Given a token that will expire in a little under min_life_s
    create = FakeCreate()
    first = store.get_or_create(REF, create)
    clock.set(first.expires_at_ms / 1000 - MIN_LIFE_S + 1)
    # When a step needs it
    assert store.get(REF) is None
    fresh = store.get_or_create(REF, create)
    # Then a new token is created (and stored) instead of risking an expired one mid-send
    assert create.calls == 2
    assert fresh.created_now
    assert fresh.journey_id == "journey-2"
    assert fresh.expires_at_ms == ms(clock() + 7 * DAY_S)
    assert store.get_or_create(REF, create).journey_id == "journey-2"


def test_drop_only_the_rejected_journey_id(store: JourneyTokenStore) -> None:
    # Given the stored token is journey-1
    create = FakeCreate()
    store.get_or_create(REF, create)
    # When a worker holding an older token (journey-0) reports it rejected
    assert not store.drop(REF, "journey-0")
    # Then the current token stays
    assert store.get(REF) is not None
    # When the current one is rejected, it is dropped and the next step creates a new one
    assert store.drop(REF, "journey-1")
    assert store.get(REF) is None
    assert store.get_or_create(REF, create).journey_id == "journey-2"
    assert create.calls == 2


def test_drop_of_a_missing_token_is_a_no_op(store: JourneyTokenStore) -> None:
    assert not store.drop(REF, "journey-1")


def test_a_failed_create_stores_nothing_and_frees_the_lock(
    store: JourneyTokenStore, client: redis.Redis, keys: Keys
) -> None:
    # Given get-token fails (Zalo unreachable)
    def failing() -> JourneyToken:
        raise ZaloTransportError("connect failed", endpoint="/journey/get-token")

    # When a step tries, the error reaches the caller
    with pytest.raises(ZaloTransportError, match="connect failed"):
        store.get_or_create(REF, failing)
    # Then nothing is stored and the lock is free, so the retry creates at once
    lock_key = keys.journey_token_lock(REF.account, REF.phone, REF.journey, REF.token_type)
    assert not client.exists(lock_key)
    create = FakeCreate()
    assert store.get_or_create(REF, create).journey_id == "journey-1"
    assert create.calls == 1


def test_waiter_gives_up_with_a_transient_error_when_the_holder_never_stores(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    # Given another worker holds the creation lock and died before storing a token
    lock_key = keys.journey_token_lock(REF.account, REF.phone, REF.journey, REF.token_type)
    assert Lock(client, lock_key, ttl_s=60).acquire()
    sleep = RecordingSleep(clock)  # each poll advances the fake clock, no real waiting
    store = make_store(client, keys, clock, sleep)
    create = FakeCreate()
    start = clock()
    # When a step waits for the token
    with pytest.raises(ZaloTransportError) as info:
        store.get_or_create(REF, create)
    # Then it gives up after wait_s with a transient (retryable) error, never calling Zalo
    assert info.value.transient
    assert info.value.endpoint == "/journey/get-token"
    assert create.calls == 0
    assert clock() - start == pytest.approx(WAIT_S, abs=POLL_S)
    assert set(sleep.calls) == {POLL_S}
    assert len(sleep.calls) == pytest.approx(WAIT_S / POLL_S, abs=1)


def test_waiter_takes_the_token_stored_by_the_lock_holder(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    # Given another worker holds the lock and stores its token while we poll
    lock_key = keys.journey_token_lock(REF.account, REF.phone, REF.journey, REF.token_type)
    holder = Lock(client, lock_key, ttl_s=60)
    assert holder.acquire()
    other = make_store(client, keys, clock, RecordingSleep(clock))
    holders_create = FakeCreate()

    def store_on_second_poll(seconds: float) -> None:
        clock.advance(seconds)
        polls.append(seconds)
        if len(polls) == 2:  # the holder finishes its get-token call: it stores, then unlocks
            holder.release()
            other.get_or_create(REF, holders_create)

    polls: list[float] = []
    store = make_store(client, keys, clock, store_on_second_poll)
    create = FakeCreate()
    # When we get_or_create
    token = store.get_or_create(REF, create)
    # Then we receive the holder's token and never call Zalo ourselves
    assert create.calls == 0
    assert holders_create.calls == 1
    assert token.journey_id == "journey-1"
    assert not token.created_now
    assert len(polls) == 2


def test_making_a_token_the_caller_saw_missing_takes_three_round_trips(
    store: JourneyTokenStore, client: redis.Redis, keys: Keys
) -> None:
    # Given a step that just read (in begin_step.lua) that no token is stored (and a first
    # token made for another journey: connection opened, scripts loaded)
    from worker import metrics  # noqa: PLC0415

    store.get_or_create(TokenRef(REF.account, REF.phone, "other", REF.token_type), FakeCreate())
    before = metrics.REDIS_ROUND_TRIPS._value.get()
    # When it makes one
    token = store.get_or_create(REF, FakeCreate(), known_missing=True)
    # Then: take the lock, read again under it, store and unlock in one call
    assert metrics.REDIS_ROUND_TRIPS._value.get() - before == 3
    assert token.created_now and secret(token) == "jt-secret-1"
    lock_key = keys.journey_token_lock(REF.account, REF.phone, REF.journey, REF.token_type)
    assert not client.exists(lock_key)
    assert secret(store.get_or_create(REF, FakeCreate())) == "jt-secret-1"
