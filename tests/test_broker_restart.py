"""The hardened Redis transport against a real redis-server that restarts."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection

from worker.messaging.broker import TRANSPORT, Channel, transport_for
from zns_dev.localrun import RedisServer


@pytest.fixture
def server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def channel(server: RedisServer) -> Iterator[Channel]:
    with Connection(server.url, transport=TRANSPORT) as connection:
        chan = connection.default_channel
        assert isinstance(chan, Channel)
        yield chan


def _taken(chan: Channel, tag: str) -> object:
    """A message as kombu builds it after BRPOP."""
    raw = chan.prepare_message(
        "body", properties={"delivery_info": {"exchange": "", "routing_key": "zns"}}
    )
    raw["properties"]["delivery_tag"] = tag
    return chan.Message(raw, channel=chan)


def test_redis_urls_get_the_hardened_transport_and_others_do_not() -> None:
    assert transport_for("redis://127.0.0.1:6379/0") == TRANSPORT
    assert transport_for("rediss://host:6380/0") == TRANSPORT
    assert transport_for("amqp://guest:guest@127.0.0.1:5672//") is None


def test_a_message_taken_as_redis_restarts_is_still_recorded_as_unacked(
    server: RedisServer, channel: Channel
) -> None:
    message = _taken(channel, "tag-1")
    server.stop()
    restart = threading.Timer(0.5, server.start)
    restart.start()
    channel.qos.append(message, "tag-1")  # kombu's own append would raise and drop it
    restart.join()
    unacked = redis.Redis.from_url(server.url).hkeys(channel.unacked_key)
    assert unacked == [b"tag-1"]


def test_a_channel_whose_connection_was_collected_reports_a_connection_error(
    channel: Channel,
) -> None:
    channel.connection.client = None  # what Celery's collect() leaves behind
    with pytest.raises(redis.ConnectionError):
        channel._connparams()
