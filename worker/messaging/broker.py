"""The Redis broker transport of our workers: kombu's, with a pop that cannot lose a message
and many messages handed to the consumer per round trip.

kombu's Redis consumer takes one message per BRPOP and then registers it as unacked in a second
round trip, all on the worker's single consumer thread. Two things follow. With a backlog, that
thread, not Zalo's latency, capped a worker process (its pool of threads sat mostly idle). And a
BRPOP whose reply never reaches the worker (Redis restarted with the reply in its output buffer,
a dropped connection, a worker killed between the two calls) loses the message: Redis popped it
and nobody holds it. Here:

- The blocking command is a move (`BLMOVE`, `BRPOPLPUSH` before Redis 6.2) of the first queue's
  head into this consumer's own inbox, a list named after the queue, the host and the process.
- After each move, or its timeout, one Lua call (`broker_pop_many.lua`) drains the inboxes and
  takes up to `MAX_BATCH` more messages, never more than the prefetch room left, and registers
  each exactly as kombu does. The inbox is marked as seen in a registry (`INBOXES`) then, and
  before a move when it has not been for `TOUCH_EVERY_S`.
- kombu's visibility sweep, every 10 s on every worker, also puts back at the head of its queue
  every inbox not seen for `INBOX_STALE_S` (`broker_inbox_sweep.lua`): a killed worker's. A
  message is always in exactly one of queue, inbox and unacked, and every move between them is
  atomic, so the sweep can cost order but never a message or a duplicate.

Acks, restores after the visibility timeout and the warm shutdown's requeue are kombu's own: every
message handed over is tracked by kombu's QoS. Each crash point: docs/reliability.md, the
reliable pop.

It is also hardened for a Redis restart under load (two kombu 5.7 behaviours lost or stopped
work then):

- A channel whose connection Celery already collected builds a new client from
  `self.connection.client`, which is then None: the AttributeError escapes kombu's
  connection-error handling (closing the channel, acking a message taken before the restart) and
  Celery treats it as unrecoverable: the worker exits. Here it is a `redis.ConnectionError`,
  which every caller already handles (an ack that fails leaves the message unacked in Redis, and
  the visibility sweep brings it back).
- A message registered by Python (one the Lua drain cannot read, or any message with kombu's
  global key prefix, where kombu's BRPOP path is kept) is registered in a second call. If Redis
  stops in between, that call is retried while Redis comes back (seconds), so the message is
  kept.

And it never lets a message a producer wrote kill the consumer: every popped item goes through
`worker/messaging/broker_message.py` (a sound envelope as it is; anything kombu would raise on,
wrapped for the consumer to dead-letter), and the batch pop leaves what Redis's cjson cannot
decode for the blocking move, after which Python reads it.

Producers and Flower are unaffected: the wire format and the queue keys are kombu's. Selected with
`broker_transport` for `redis://` and `rediss://` brokers (`worker/messaging/celery_app.py`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from functools import cached_property
from queue import Empty
from typing import Any, cast

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

from worker.messaging.broker_message import envelope_of
from worker.state.scripts import Script, register

log = logging.getLogger(__name__)
TRANSPORT = "worker.messaging.broker:Transport"
#: Messages taken per extra round trip; bounded by the prefetch room (concurrency x multiplier).
MAX_BATCH = 64
#: Pauses between attempts to register a message just taken: ~6 s, a Redis restart.
APPEND_PAUSES_S = (0.1, 0.2, 0.4, 0.8, 1.5, 3.0)
#: The registry of consumers' inboxes (zset: inbox key -> when last drained or touched, seconds).
INBOXES = "_zns.inboxes"
INBOX_MARK = "inbox."
#: broker_inbox_sweep.lua's answer when the queue key holds something other than a list.
SWEEP_NOT_A_LIST = -2
#: A consumer marks its inbox as seen before a blocking move if it has not for this long (its
#: drains mark it too).
TOUCH_EVERY_S = 10.0
#: A sweep puts back an inbox not seen for this long (or the visibility timeout, if shorter).
#: Nothing in an inbox was delivered yet, so putting back a live consumer's costs order only:
#: three touch periods is enough, and a killed worker's message waits seconds, not minutes.
INBOX_STALE_S = 3 * TOUCH_EVERY_S


class QoS(kombu_redis.QoS):
    """kombu's QoS; a message registered by the batch pop is not registered a second time, and
    the visibility sweep also puts back the inboxes of gone consumers."""

    def append(self, message: Any, delivery_tag: str) -> None:
        """Track the message; write it to the unacked index unless the pop already did."""
        if getattr(self.channel, "registering_done", False):
            super(kombu_redis.QoS, self).append(message, delivery_tag)
            return
        for pause in (*APPEND_PAUSES_S, None):
            try:
                super().append(message, delivery_tag)
                return
            except redis.ConnectionError as exc:
                if pause is None:
                    log.critical("message %s taken, not recorded as unacked: %s", delivery_tag, exc)
                    raise
                log.warning("broker Redis unreachable recording a message taken; retrying")
                time.sleep(pause)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        """kombu's sweep for unacked messages past the visibility timeout, then for inboxes not
        seen for `INBOX_STALE_S`."""
        super().restore_visible(start, num, interval)
        channel = cast("Channel", self.channel)
        channel.sweep_inboxes(time.time() - min(self.visibility_timeout, INBOX_STALE_S))


class Channel(kombu_redis.Channel):
    """kombu's Redis channel: a blocking move into the consumer's own inbox instead of BRPOP,
    then a batch registered as unacked in one round trip."""

    QoS = QoS
    registering_done = False
    _pop_many: Script | None = None
    _sweep: Script | None = None
    _sync_client: redis.Redis | None = None
    _touched_at = float("-inf")
    _move: str | None = None

    @cached_property
    def owner(self) -> str:
        """This consumer's name in its inbox keys: the host and process (a restarted process
        with the same name drains what its predecessor left)."""
        return f"{socket.gethostname()}.{os.getpid()}"

    def inbox(self, queue: str) -> str:
        """The inbox of this consumer for `queue`: its name, then the priority separator (so
        kombu's `rsplit(sep)` finds the queue), then `inbox.` and the owner."""
        return f"{queue}{self.sep}{INBOX_MARK}{self.owner}"

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous)  # type: ignore[misc]  # not in the stub

    def _create_client(self, asynchronous: bool = False) -> Any:
        """kombu builds a new `redis.Redis` for every publish, ack and task-event flush, and
        redis-py's constructor copies its ~200 response callbacks each time: a quarter of the
        consumer thread's time under load. The synchronous client only wraps the channel's pool
        (it holds no connection of its own), so one is kept and reused while the pool lasts."""
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]  # not stubbed
        pool = self.pool
        if self._sync_client is None or self._sync_client.connection_pool is not pool:
            self._sync_client = super()._create_client()  # type: ignore[misc]  # not stubbed
        return self._sync_client

    def _brpop_start(self, timeout: float | None = None) -> None:
        """Instead of kombu's BRPOP (a message popped and lost if its reply never arrives), a
        blocking move of the first queue's head into this consumer's inbox."""
        if self.global_keyprefix:
            super()._brpop_start(timeout)  # type: ignore[misc]  # not in the stub
            return None
        queues = self._queue_cycle.consume(len(self.active_queues))  # type: ignore[attr-defined]
        if not queues:
            return None
        queue = queues[0]
        client = self.client
        if time.monotonic() - self._touched_at > TOUCH_EVERY_S:  # listed before it can hold one
            client.zadd(INBOXES, {self.inbox(queue): time.time()})
            self._touched_at = time.monotonic()
        self._in_poll = client.connection
        self._brpop_sent_at = time.monotonic()
        client.connection.send_command(*self._move_command(client, queue, timeout))
        return None

    def _move_command(self, client: redis.Redis, queue: str, timeout: float | None) -> list[Any]:
        if self._move is None:
            version = str(client.info("server").get("redis_version", "0"))
            self._move = "BLMOVE" if _version(version) >= (6, 2) else "BRPOPLPUSH"
        wait = timeout if timeout is not None else self.brpop_timeout
        if self._move == "BLMOVE":
            return ["BLMOVE", queue, self.inbox(queue), "RIGHT", "LEFT", wait or 0]
        return ["BRPOPLPUSH", queue, self.inbox(queue), wait or 0]

    def _brpop_read(self, **options: Any) -> bool:
        """The blocking move's reply (the message, now in the inbox, or nothing after the
        timeout), then one drain of the inbox and more from the queues."""
        if self.global_keyprefix:
            return self._brpop_read_kombu(**options)
        try:
            try:
                command = self._move or "BLMOVE"
                self.client.parse_response(self.client.connection, command, **options)
            except self.connection_errors:  # type: ignore[attr-defined]  # not stubbed
                self.client.connection.disconnect()
                raise
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()  # type: ignore[attr-defined]  # not stubbed
        if not self._deliver_more():
            raise Empty()
        return True

    def _brpop_read_kombu(self, **options: Any) -> bool:
        """kombu's `_brpop_read` (5.7), with the item read by `envelope_of` (global key prefix:
        no inbox, no batch)."""
        try:
            try:
                dest_item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:  # type: ignore[attr-defined]  # not stubbed
                self.client.connection.disconnect()
                raise
            if not dest_item:
                raise Empty()
            dest = bytes_to_str(dest_item[0]).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)  # type: ignore[attr-defined]  # not stubbed
            self.connection._deliver(envelope_of(dest_item[1], dest), dest)
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()  # type: ignore[attr-defined]  # not stubbed
        return True

    def _deliver_more(self) -> int:
        """Drain the inboxes of the queues consumed and take up to the prefetch room more, in
        one round trip; deliver each. Returns how many were delivered."""
        room = self.qos.can_consume_max_estimate()
        count = MAX_BATCH if room is None else max(0, min(MAX_BATCH, room))
        queues = [
            self._q_for_pri(queue, pri)  # type: ignore[attr-defined]  # not stubbed
            for pri in self.priority_steps
            for queue in self.active_queues
        ]
        if not queues:
            return 0
        inboxes = [self.inbox(queue) for queue in self.active_queues]
        with self.conn_or_acquire() as client:
            if self._pop_many is None:
                self._pop_many = register(client, "broker_pop_many", package="worker.messaging")
            keys, args = pop_many_args(
                self.unacked_index_key, self.unacked_key, INBOXES, inboxes, queues,
                want=count, now=time.time(),
            )  # fmt: skip
            reply = self._pop_many(keys=keys, args=args, client=client)
        self._touched_at = time.monotonic()
        items = list(zip(reply[::3], reply[1::3], reply[2::3], strict=True))
        for i, (raw, key, tag) in enumerate(items):
            queue = bytes_to_str(key).rsplit(self.sep, 1)[0]
            if i == 0:  # as kombu after a BRPOP: the queue served goes to the back of the cycle
                self._queue_cycle.rotate(queue)  # type: ignore[attr-defined]  # not stubbed
            self._deliver_one(raw, queue, bytes_to_str(tag))
        return len(items)

    def _deliver_one(self, raw: bytes, queue: str, tag: str) -> None:
        """A message the pop registered (its tag), or one it left to kombu's QoS (no tag)."""
        if not tag:
            self.connection._deliver(envelope_of(raw, queue), queue)
            return
        self.registering_done = True
        try:
            self.connection._deliver(envelope_of(raw, queue, tag=tag), queue)
        finally:
            self.registering_done = False

    def sweep_inboxes(self, stale_before: float) -> int:
        """Put back the inboxes of this channel's queues not drained since `stale_before`;
        returns how many messages went back."""
        moved = 0
        with self.conn_or_acquire() as client:
            if self._sweep is None:
                self._sweep = register(client, "broker_inbox_sweep", package="worker.messaging")
            for raw in client.zrangebyscore(INBOXES, "-inf", f"({stale_before!r}"):
                inbox = bytes_to_str(raw)
                queue, _, mark = inbox.rpartition(self.sep)
                if queue not in self.active_queues or not mark.startswith(INBOX_MARK):
                    continue
                keys, args = inbox_sweep_args(INBOXES, inbox, queue, stale_before=stale_before)
                back = self._sweep(keys=keys, args=args)
                if back == SWEEP_NOT_A_LIST:
                    log.error("inbox %r not put back: its queue key is not a list", mark)
                if back > 0:
                    log.warning("put back %d message(s) from the gone consumer %s", back, mark)
                    moved += back
        return moved


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with our channel."""

    Channel = Channel


def transport_for(broker_url: str) -> str | None:
    """Our transport for a Redis broker URL; None (kombu picks by scheme) for anything else."""
    scheme = broker_url.partition("://")[0]
    return TRANSPORT if scheme in ("redis", "rediss") else None


def pop_many_args(
    unacked_index: str,
    unacked_bodies: str,
    registry: str,
    inboxes: list[str],
    queues: list[str],
    *,
    want: int,
    now: float,
) -> tuple[list[str], list[int | str]]:
    """broker_pop_many.lua's KEYS and ARGV: the consumer's inboxes, then the queues in the order
    kombu polls them; `now` is kombu's index score (seconds, float, passed as its repr)."""
    keys = [unacked_index, unacked_bodies, registry, *inboxes, *queues]
    return keys, [want, repr(now), len(inboxes)]


def inbox_sweep_args(
    registry: str, inbox: str, queue: str, *, stale_before: float
) -> tuple[list[str], list[str]]:
    """broker_inbox_sweep.lua's KEYS and ARGV."""
    return [registry, inbox, queue], [repr(stale_before)]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())
