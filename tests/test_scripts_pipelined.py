"""`run_pipelined`: Lua calls in one round trip, by SHA, surviving a Redis that forgot them."""

from __future__ import annotations

import pytest
import redis

from worker.state.scripts import run_pipelined

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
FAIL = "return redis.error_reply('no good')"


def _calls(client: redis.Redis, name: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


def test_calls_run_once_each_in_one_round_trip_without_asking_script_exists(
    client: redis.Redis,
) -> None:
    script = client.register_script(INCR)
    client.delete("t:a", "t:b")
    client.script_load(INCR)
    exists_before = _calls(client, "script|exists")
    replies = run_pipelined(client, [(script, ["t:a"], [2]), (script, ["t:b"], [5])])
    assert replies == [2, 5]
    assert _calls(client, "script|exists") == exists_before


def test_a_flushed_script_is_loaded_and_only_the_refused_calls_are_sent_again(
    client: redis.Redis,
) -> None:
    # Given two scripts, one of them forgotten by Redis (a restart or SCRIPT FLUSH)
    known = client.register_script(INCR)
    forgotten = client.register_script(INCR + " -- forgotten")
    client.delete("t:known", "t:forgotten")
    client.script_flush()
    client.script_load(known.script)
    # When both are called in one pipeline
    replies = run_pipelined(client, [(known, ["t:known"], [1]), (forgotten, ["t:forgotten"], [1])])
    # Then each ran exactly once
    assert replies == [1, 1]
    assert client.get("t:known") == "1" and client.get("t:forgotten") == "1"


def test_an_error_is_raised_after_the_other_calls_ran(client: redis.Redis) -> None:
    ok, bad = client.register_script(INCR), client.register_script(FAIL)
    client.delete("t:before")
    with pytest.raises(redis.ResponseError, match="no good"):
        run_pipelined(client, [(ok, ["t:before"], [1]), (bad, ["t:x"], [])])
    assert client.get("t:before") == "1"
