"""Key shapes: one prefix, `{account}` hash tags (Cluster), bad names refused, long parts hashed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.crc import key_slot

from worker.state.keys import MAX_RAW_PART, Keys

ACCOUNT = "acme-shop_1.vn"
KEYS = Keys("zns")

#: Every per-account key shape, built for one account.
PER_ACCOUNT: dict[str, Callable[[Keys, str], str]] = {
    "idempotency": lambda k, a: k.idempotency(a, "job-1"),
    "quota": lambda k, a: k.quota(a),
    "template_block": lambda k, a: k.template_block(a, "tpl-9"),
    "paused": lambda k, a: k.paused(a),
    "journey_token": lambda k, a: k.journey_token(a, "84987654321", "order-1", "token_logistics_7"),
    "journey_token_lock": lambda k, a: k.journey_token_lock(
        a, "84987654321", "order-1", "token_logistics_7"
    ),
    "oauth": lambda k, a: k.oauth(a),
    "oauth_lock": lambda k, a: k.oauth_lock(a),
    "parked": lambda k, a: k.parked(a),
    "parked_jobs": lambda k, a: k.parked_jobs(a),
    "probe_lock": lambda k, a: k.probe_lock(a, "quota"),
}


def slot(key: str) -> int:
    """The Redis Cluster hash slot of `key`."""
    return int(key_slot(key.encode()))


@pytest.mark.parametrize("name", sorted(PER_ACCOUNT))
def test_every_per_account_key_is_prefixed_and_tagged_with_the_account(name: str) -> None:
    key = PER_ACCOUNT[name](KEYS, ACCOUNT)
    assert key.startswith(f"zns:{{{ACCOUNT}}}:")
    # The first {...} decides the slot: it must be the account, whatever follows.
    assert slot(key) == slot(ACCOUNT)


def test_all_keys_of_one_account_share_one_slot_and_accounts_differ() -> None:
    # Given two accounts whose names hash to different slots
    other = "other-oa"
    assert slot(ACCOUNT) != slot(other)
    # When every key shape is built for each
    mine = {slot(build(KEYS, ACCOUNT)) for build in PER_ACCOUNT.values()}
    theirs = {slot(build(KEYS, other)) for build in PER_ACCOUNT.values()}
    # Then each account's keys sit in exactly one slot, and not the same one
    assert mine == {slot(ACCOUNT)}
    assert theirs == {slot(other)}


@pytest.mark.parametrize(
    "script_keys",
    [
        # begin_step.lua (StepGate.begin): all nine of its KEYS
        [
            KEYS.idempotency(ACCOUNT, "k" * 300),
            KEYS.paused(ACCOUNT),
            KEYS.quota(ACCOUNT),
            KEYS.template_block(ACCOUNT, "t" * 300),
            KEYS.rate(ACCOUNT),
            KEYS.cooloff(ACCOUNT),
            KEYS.oauth(ACCOUNT),
            KEYS.journey_token(ACCOUNT, "84987654321", "j" * 300, "token_logistics_30"),
            KEYS.journey_token_lock(ACCOUNT, "84987654321", "j" * 300, "token_logistics_30"),
        ],
        # park_claim_due.lua
        [KEYS.parked(ACCOUNT), KEYS.parked_jobs(ACCOUNT)],
        # a journey token and its single-flight lock
        [
            KEYS.journey_token(ACCOUNT, "84987654321", "j" * 300, "token_logistics_30"),
            KEYS.journey_token_lock(ACCOUNT, "84987654321", "j" * 300, "token_logistics_30"),
        ],
        # the dead-letter store (global, under its own tag)
        [KEYS.dead_letter_index(), KEYS.dead_letter_jobs()],
    ],
)
def test_keys_used_together_share_a_slot(script_keys: list[str]) -> None:
    assert len({slot(key) for key in script_keys}) == 1


def test_dead_letter_keys_use_the_prefix_and_their_own_tag() -> None:
    assert KEYS.dead_letter_index() == "zns:{dl}:index"
    assert KEYS.dead_letter_jobs() == "zns:{dl}:jobs"
    assert slot(KEYS.dead_letter_index()) == slot("dl")


def test_every_key_uses_the_configured_prefix() -> None:
    keys = Keys("billing-zns")
    built = [build(keys, ACCOUNT) for build in PER_ACCOUNT.values()]
    built += [keys.dead_letter_index(), keys.dead_letter_jobs()]
    assert all(key.startswith("billing-zns:{") for key in built)
    assert len(set(built)) == len(built)  # no two shapes collide


def test_braces_in_a_producer_supplied_part_do_not_move_the_slot() -> None:
    # Given an idempotency key and journey that contain their own {hash tag}
    key = KEYS.idempotency(ACCOUNT, "{evil}")
    token = KEYS.journey_token(ACCOUNT, "84987654321", "{evil}", "token_logistics_7")
    # Then the account's tag, which comes first, still decides the slot
    assert slot(key) == slot(ACCOUNT) == slot(token)
    assert slot(key) != slot("evil")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a b",
        "a:b",
        "{acct}",
        "ac}ct",
        "acct{",
        "tài-khoản",
        "a/b",
        "x" * 65,
    ],
)
def test_bad_account_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid account name"):
        KEYS.quota(bad)


def test_an_account_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid account name"):
        KEYS.quota("acct\n")


@pytest.mark.parametrize("good", ["a", "default", "A-b_c.9", "x" * 64])
def test_good_account_names_are_accepted(good: str) -> None:
    assert KEYS.quota(good) == f"zns:{{{good}}}:quota"


def test_parts_up_to_the_limit_are_kept_as_they_are() -> None:
    raw = "k" * MAX_RAW_PART
    assert KEYS.idempotency(ACCOUNT, raw) == f"zns:{{{ACCOUNT}}}:idem:{raw}"
    assert KEYS.template_block(ACCOUNT, raw).endswith(f":tplblock:{raw}")


@pytest.mark.parametrize(
    "build",
    [
        lambda part: KEYS.idempotency(ACCOUNT, part),
        lambda part: KEYS.template_block(ACCOUNT, part),
        lambda part: KEYS.journey_token(ACCOUNT, "84987654321", part, "token_logistics_7"),
    ],
)
def test_long_parts_are_hashed_short_stable_and_distinct(build: Callable[[str], str]) -> None:
    # Given two long parts that differ only in their last character
    first = "p" * MAX_RAW_PART + "1"
    second = "p" * MAX_RAW_PART + "2"
    # When keys are built from them
    key_1, key_1_again, key_2 = build(first), build(first), build(second)
    # Then the raw part is replaced by a bounded digest, stable across calls, distinct per input
    assert first not in key_1
    assert "h:" in key_1
    assert key_1 == key_1_again
    assert key_1 != key_2
    assert len(key_1) < 100
    assert slot(key_1) == slot(ACCOUNT)


def test_hashed_part_is_h_prefix_and_a_128_bit_hex_digest() -> None:
    key = KEYS.idempotency(ACCOUNT, "x" * 5000)
    digest = key.rsplit(":h:", 1)[1]
    assert len(digest) == 32
    int(digest, 16)  # hex
