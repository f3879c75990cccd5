"""The seal on the worker's own `_meta`: what verifies, what does not, and a Redis outage."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker.pipeline.step_meta import MetaSeal, StepMeta
from worker.state.keys import Keys

JOB = {"phone": "84987654321", "template_id": "1", "template_data": {"a": "b"}}
HISTORY = ({"class": "transient", "code": -100, "message": "later"},)


def test_a_sealed_meta_opens_for_its_own_job_only(client: redis.Redis, keys: Keys) -> None:
    seal = MetaSeal(client, keys)
    sealed = seal.seal(StepMeta(history=HISTORY, probe=True), JOB)
    assert seal.open(sealed, JOB) == StepMeta(history=HISTORY, probe=True)
    # Another job, another deployment's key, a forged or altered meta: a first attempt
    assert seal.open(sealed, {**JOB, "template_id": "2"}) == StepMeta()
    assert seal.open({**sealed, "probe": False}, JOB) == StepMeta()
    assert seal.open({"probe": True, "history": []}, JOB) == StepMeta()
    assert seal.open({**sealed, "seal": "0" * 64}, JOB) == StepMeta()
    assert seal.open("probe", JOB) == StepMeta()
    other = MetaSeal(client, Keys("elsewhere"))
    assert other.open(sealed, JOB) == StepMeta()


def test_a_redis_outage_never_stops_a_step_from_going_out(keys: Keys) -> None:
    # Given a worker whose state Redis is unreachable before it ever read the key
    down = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    seal = MetaSeal(down, keys)
    # When a retry is published and a sealed meta arrives
    unsealed = seal.seal(StepMeta(history=HISTORY), JOB)
    # Then the retry goes out unsealed (counting for nothing), and nothing raises
    assert "seal" not in unsealed and unsealed["history"] == list(HISTORY)
    assert seal.open({**unsealed, "seal": "0" * 64}, JOB) == StepMeta()


def test_a_warmed_seal_works_through_an_outage(client: redis.Redis, keys: Keys) -> None:
    seal = MetaSeal(client, keys)
    seal.warm()
    client.connection_pool.connection_kwargs["port"] = 1  # the state Redis goes away
    client.connection_pool.disconnect()
    sealed = seal.seal(StepMeta(history=HISTORY), JOB)
    assert seal.open(sealed, JOB) == StepMeta(history=HISTORY)
