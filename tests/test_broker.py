"""The batch-popping broker transport: messages taken in one round trip are registered as kombu
registers them, so kombu's own restore puts them back unchanged (nothing lost)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis
from celery import Celery
from kombu.transport import redis as kombu_redis

from worker.messaging.broker import INBOXES, Transport, inbox_sweep_args, pop_many_args
from worker.messaging.broker_message import REASON_HEADER, UNREADABLE, envelope_of
from worker.messaging.celery_app import create_celery
from worker.messaging.names import QUEUE
from worker.settings import Settings
from worker.state.scripts import Script, register


def _publish(redis_url: str, count: int) -> Celery:
    # A producer with nothing of ours: the messages a foreign codebase would put on the queue
    app = Celery(broker=redis_url)
    for i in range(count):
        app.send_task("zns.send_journey_step", kwargs={"i": i}, queue=QUEUE)
    return app


def test_our_app_uses_the_batch_transport_for_redis_only(redis_url: str) -> None:
    app = create_celery(Settings(_env_file=None, redis_url=redis_url))
    with app.connection_for_read() as conn:
        assert conn.transport_cls is not None
        assert isinstance(conn.transport, Transport)
    amqp = create_celery(Settings(_env_file=None, broker_url="amqp://guest@127.0.0.1//"))
    assert "broker_transport" not in amqp.conf or not amqp.conf.broker_transport


def test_popped_messages_are_unacked_in_kombus_format_and_restore_unchanged(
    redis_url: str, client: redis.Redis
) -> None:
    # Given 5 messages on the queue
    client.delete(QUEUE, "unacked", "unacked_index")
    _publish(redis_url, 5)
    before = client.lrange(QUEUE, 0, -1)
    oldest = before[-3:][::-1]  # LPUSH in, RPOP out
    # When 3 are popped in one call
    pop = register(client, "broker_pop_many", package="worker.messaging")
    reply = _pop(pop, 3, now=1700000000.5)
    # Then 3 came out, oldest first, each registered as unacked, 2 left on the queue
    assert reply[0::3] == oldest and reply[1::3] == [QUEUE] * 3
    assert sorted(reply[2::3]) == sorted(client.hkeys("unacked"))  # the tag each is acked by
    assert client.llen(QUEUE) == 2
    assert client.zcard("unacked_index") == 3 and client.hlen("unacked") == 3
    # And kombu's own restore (as after a worker's death) puts them back as they were (kombu
    # marks a restored message `redelivered`)
    app = Celery(broker=redis_url)
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        assert isinstance(channel, kombu_redis.Channel)
        for tag in client.hkeys("unacked"):
            channel.qos.restore_by_tag(tag, client=client)  # type: ignore[attr-defined]
    assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0
    assert _comparable(client.lrange(QUEUE, 0, -1)) == _comparable(before)


def _pop(pop: Script, want: int, *, now: float = 1.0, inboxes: tuple[str, ...] = ()) -> Any:
    keys, args = pop_many_args(
        "unacked_index", "unacked", INBOXES, list(inboxes), [QUEUE], want=want, now=now
    )
    return pop(keys=keys, args=args)


def _comparable(raw_messages: list[bytes | str]) -> list[str]:
    decoded = [json.loads(raw) for raw in raw_messages]
    for message in decoded:
        message["headers"].pop("redelivered", None)
        message["properties"]["delivery_info"].pop("redelivered", None)
    return sorted(json.dumps(message, sort_keys=True) for message in decoded)


def test_a_pop_takes_no_more_than_asked_and_nothing_from_an_empty_queue(
    redis_url: str, client: redis.Redis
) -> None:
    client.delete(QUEUE, "unacked", "unacked_index")
    pop = register(client, "broker_pop_many", package="worker.messaging")
    assert _pop(pop, 10) == []
    _publish(redis_url, 4)
    assert len(_pop(pop, 2)) == 6
    assert client.llen(QUEUE) == 2


@pytest.mark.parametrize(
    "poison",
    [
        '{"properties": {"delivery_tag": "t-\\ud800"}, "body": ""}',  # cjson refuses it
        '{"properties": {"delivery_tag": "t", "delivery_info": {}}, "headers": {"id": "\\udc00"}}',
        '{"properties": {"delivery_tag": 7, "delivery_info": {"exchange": "", "routing_key": ""}}}',
        '{"properties": {"delivery_tag": "t", "delivery_info": "zns"}}',
        '{"properties": "x"}',
        "[1, 2]",
        "not json",
    ],
)
def test_a_pop_never_takes_a_message_it_cannot_read_and_stops_before_it(
    poison: str, redis_url: str, client: redis.Redis
) -> None:
    # Given two good messages, then one the script cannot read, then one more
    client.delete(QUEUE, "unacked", "unacked_index")
    _publish(redis_url, 2)
    client.lpush(QUEUE, poison)
    _publish(redis_url, 1)
    pop = register(client, "broker_pop_many", package="worker.messaging")
    # When a batch of 10 is asked for
    reply = _pop(pop, 10)
    # Then the two before it are taken and registered, and it stays at the head of the queue
    # (for kombu's BRPOP, read in Python): a script error would have popped it with no home
    assert len(reply) == 6 and client.hlen("unacked") == 2
    assert client.llen(QUEUE) == 2
    assert client.lindex(QUEUE, -1) == poison


def test_every_list_item_becomes_an_envelope_kombu_can_handle() -> None:
    # A sound envelope is delivered as it is
    sound = json.dumps(
        {
            "body": "e30=",
            "headers": {"task": "t"},
            "properties": {
                "delivery_tag": "a",
                "body_encoding": "base64",
                "delivery_info": {"exchange": "zns", "routing_key": "zns"},
            },
        }
    )
    assert envelope_of(sound.encode(), "zns") == json.loads(sound)
    # A lone-surrogate delivery tag and missing delivery info are mended (Redis can store the
    # tag; a restore knows where to put the message back)
    mended = envelope_of('{"properties": {"delivery_tag": "\\ud800"}, "body": ""}', "zns")
    props = mended["properties"]
    assert props["delivery_tag"].isascii() and len(props["delivery_tag"]) == 32
    assert props["delivery_info"] == {"exchange": "zns", "routing_key": "zns"}
    # Anything else is wrapped whole, with its reason, keeping a usable delivery tag
    for raw, reason in [
        (b"\xff\xfe", "not a JSON broker envelope"),
        (b"[1]", "no `properties` object"),
        (b'{"properties": {"delivery_tag": "k", "body_encoding": "rot13"}, "body": "x"}', "rot13"),
        (
            b'{"properties": {"delivery_tag": "k", "body_encoding": "base64"}, "body": "!"}',
            "base64",
        ),
    ]:
        wrapped = envelope_of(raw, "zns")
        assert wrapped["content-type"] == UNREADABLE
        assert reason in wrapped["headers"][REASON_HEADER]
        assert base64.b64decode(wrapped["body"]) == raw
        if raw.startswith(b'{"properties": {"delivery_tag": "k"'):
            assert wrapped["properties"]["delivery_tag"] == "k"


def test_an_item_the_batch_pop_registered_keeps_its_tag_whatever_python_makes_of_it() -> None:
    # Given items the Lua pop took (cjson read them) and registered under their own tags: bytes
    # that are not UTF-8 and a raw control character inside a string
    head = b'{"properties": {"delivery_tag": "t-1", "delivery_info": {}}, "headers": '
    for raw in (
        head + b'{"x": "\xed\xa0\x80"}}',
        head + b'{"x": "a\x01b"}}',
        b'{"properties": {"delivery_tag": "t-1"}, "body": "!", "content-encoding": 5}',
    ):
        # When Python reads them
        envelope = envelope_of(raw, "zns", tag="t-1")
        # Then each keeps the tag its unacked entry has, so the ack removes that entry
        assert envelope["properties"]["delivery_tag"] == "t-1"


INBOX = f"{QUEUE}\x06\x16inbox.host.1"


def test_a_drain_takes_the_whole_inbox_first_and_marks_it_seen(
    redis_url: str, client: redis.Redis
) -> None:
    # Given a message a blocking move took into this consumer's inbox (its reply lost), a poison
    # item moved there too, and two messages still on the queue
    client.delete(QUEUE, "unacked", "unacked_index", INBOXES, INBOX)
    _publish(redis_url, 3)
    moved = client.lmove(QUEUE, INBOX, "RIGHT", "LEFT")
    client.lpush(INBOX, "not json")  # moved in after it
    pop = register(client, "broker_pop_many", package="worker.messaging")
    # When the consumer drains with room for 3
    reply = _pop(pop, 3, now=50.0, inboxes=(INBOX,))
    # Then the inbox comes out whole, oldest first: the message registered, the poison with no
    # tag (Python registers it as kombu does); then 1 from the queue (the room left)
    assert reply[0::3][:2] == [moved, "not json"]
    assert reply[1::3] == [INBOX, INBOX, QUEUE]
    assert reply[5] == "" and reply[2] and reply[8]
    assert client.llen(INBOX) == 0 and client.llen(QUEUE) == 1
    assert client.hlen("unacked") == 2
    # And the inbox is marked as seen now, so no sweep puts it back
    assert client.zscore(INBOXES, INBOX) == 50.0


def test_a_sweep_puts_a_stale_inbox_back_at_the_head_in_order(
    redis_url: str, client: redis.Redis
) -> None:
    # Given a consumer that moved two messages into its inbox at t=100 and was never seen again
    client.delete(QUEUE, "unacked", "unacked_index", INBOXES, INBOX)
    _publish(redis_url, 3)
    order = client.lrange(QUEUE, 0, -1)[::-1]  # the order consumers take them in
    client.zadd(INBOXES, {INBOX: 100})
    client.lmove(QUEUE, INBOX, "RIGHT", "LEFT")
    client.lmove(QUEUE, INBOX, "RIGHT", "LEFT")
    sweep = register(client, "broker_inbox_sweep", package="worker.messaging")
    keys, args = inbox_sweep_args(INBOXES, INBOX, QUEUE, stale_before=99.0)
    # When a sweep looks for inboxes not seen since before t=99, it leaves this one alone
    assert sweep(keys=keys, args=args) == -1 and client.llen(INBOX) == 2
    # When it looks for inboxes not seen since t=101, both go back ahead of the third
    keys, args = inbox_sweep_args(INBOXES, INBOX, QUEUE, stale_before=101.0)
    assert sweep(keys=keys, args=args) == 2
    assert client.lrange(QUEUE, 0, -1)[::-1] == order
    assert client.exists(INBOX) == 0 and client.zscore(INBOXES, INBOX) is None
    # And a second sweep finds nothing to move (a message is in one place only)
    assert sweep(keys=keys, args=args) == 0 and client.llen(QUEUE) == 3


def test_a_sweep_moves_nothing_onto_a_queue_key_that_is_not_a_list(client: redis.Redis) -> None:
    # Given a stale inbox holding a message, and its queue key overwritten with a string
    client.delete(QUEUE, INBOXES, INBOX)
    client.lpush(INBOX, "m1")
    client.zadd(INBOXES, {INBOX: 1})
    client.set(QUEUE, "not a list")
    sweep = register(client, "broker_inbox_sweep", package="worker.messaging")
    keys, args = inbox_sweep_args(INBOXES, INBOX, QUEUE, stale_before=10.0)
    # Then the sweep refuses before taking anything: the message stays in the inbox
    assert sweep(keys=keys, args=args) == -2
    assert client.lrange(INBOX, 0, -1) == ["m1"]
    client.delete(QUEUE)
