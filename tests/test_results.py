"""The result backend: Celery's format and channel, one round trip, a SUCCESS never overwritten."""

from __future__ import annotations

import redis
from celery import states

from worker.messaging.celery_app import create_celery
from worker.messaging.result_backend import ResultBackend
from worker.settings import Settings


def _backend(redis_url: str) -> ResultBackend:
    backend = create_celery(Settings(_env_file=None, redis_url=redis_url)).backend
    assert isinstance(backend, ResultBackend)
    return backend


def test_a_result_is_read_back_by_plain_celery_and_expires(
    redis_url: str, client: redis.Redis
) -> None:
    # Given our backend storing a task's result
    _backend(redis_url).store_result("t-read", {"status": "sent", "msg_id": "m1"}, states.SUCCESS)
    # Then a producer with a plain Celery app (no class of ours) reads it
    from celery import Celery  # noqa: PLC0415

    plain = Celery(broker=redis_url, backend=redis_url)
    assert plain.AsyncResult("t-read").get(timeout=5) == {"status": "sent", "msg_id": "m1"}
    # And it expires like Celery's own
    assert 0 < client.ttl("celery-task-meta-t-read") <= 86_400


def test_a_success_is_never_overwritten_but_other_states_are(redis_url: str) -> None:
    backend = _backend(redis_url)
    # Given a retry, then a success
    backend.store_result("t-keep", None, states.RETRY)
    backend.store_result("t-keep", {"status": "sent"}, states.SUCCESS)
    # When a redelivered copy finishes as a duplicate
    backend.store_result("t-keep", {"status": "duplicate"}, states.SUCCESS)
    # Then the first success stays
    assert backend.get_task_meta("t-keep")["result"] == {"status": "sent"}


def test_a_store_is_one_round_trip(redis_url: str, client: redis.Redis) -> None:
    backend = _backend(redis_url)
    backend.store_result("t-warm", 1, states.SUCCESS)  # loads the script once
    client.config_resetstat()
    backend.store_result("t-once", 1, states.SUCCESS)
    stats = client.info("commandstats")
    calls = {name: value["calls"] for name, value in stats.items()}
    # One EVALSHA (its GET, SET and PUBLISH run inside it); no GET or MULTI from the client
    assert calls.get("cmdstat_evalsha") == 1
    assert "cmdstat_multi" not in calls
    assert calls.get("cmdstat_get") == 1  # the one inside the script
