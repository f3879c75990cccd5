"""The Redis broker transport of our workers: kombu's, handing the consumer many messages per
round trip instead of one.

kombu's Redis consumer takes one message per BRPOP and then registers it as unacked in a second
round trip, all on the worker's single consumer thread. With a backlog that thread, not Zalo's
latency, capped a worker process (its pool of threads sat mostly idle). Here, after each BRPOP,
one Lua call (`broker_pop_many.lua`) takes up to `MAX_BATCH` more messages, never more than the
prefetch room left, and registers each exactly as kombu does, atomically with the pop (kombu
leaves a window between the two). Acks, restores after the visibility timeout and the warm
shutdown's requeue are kombu's own: every message handed over is tracked by kombu's QoS.

It is also hardened for a Redis restart under load (two kombu 5.7 behaviours lost or stopped
work then):

- A channel whose connection Celery already collected builds a new client from
  `self.connection.client`, which is then None: the AttributeError escapes kombu's
  connection-error handling (closing the channel, acking a message taken before the restart) and
  Celery treats it as unrecoverable: the worker exits. Here it is a `redis.ConnectionError`,
  which every caller already handles (an ack that fails leaves the message unacked in Redis, and
  the visibility sweep brings it back).
- The message of the BRPOP itself is registered as unacked in a second call. If Redis stops in
  between, the message exists only in this process and kombu drops it. Here that call is retried
  while Redis comes back (seconds), so the message is kept.

And it never lets a message a producer wrote kill the consumer: every popped item goes through
`worker/messaging/broker_message.py` (a sound envelope as it is; anything kombu would raise on,
wrapped for the consumer to dead-letter), and the batch pop leaves what Redis's cjson cannot
decode for the BRPOP path.

Producers are unaffected: the wire format and the keys are kombu's. Selected with
`broker_transport` for `redis://` and `rediss://` brokers (`worker/messaging/celery_app.py`).
"""

from __future__ import annotations

import logging
import time
from queue import Empty
from typing import Any

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


class QoS(kombu_redis.QoS):
    """kombu's QoS; a message registered by the batch pop is not registered a second time."""

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


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, delivering a batch after each BRPOP."""

    QoS = QoS
    registering_done = False
    _pop_many: Script | None = None
    _sync_client: redis.Redis | None = None

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

    def _brpop_read(self, **options: Any) -> bool:
        """kombu's `_brpop_read` (5.7), with the item read by `envelope_of`, then more."""
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
        if not self.global_keyprefix:
            self._deliver_more()
        return True

    def _deliver_more(self) -> None:
        room = self.qos.can_consume_max_estimate()
        count = MAX_BATCH if room is None else min(MAX_BATCH, room)
        if count <= 0:
            return
        queues = [
            self._q_for_pri(queue, pri)  # type: ignore[attr-defined]  # not stubbed
            for pri in self.priority_steps
            for queue in self.active_queues
        ]
        with self.conn_or_acquire() as client:
            if self._pop_many is None:
                self._pop_many = register(client, "broker_pop_many", package="worker.messaging")
            keys, args = pop_many_args(
                self.unacked_index_key, self.unacked_key, queues, want=count, now=time.time()
            )
            reply = self._pop_many(keys=keys, args=args, client=client)
        self.registering_done = True
        try:
            for raw, key, tag in zip(reply[::3], reply[1::3], reply[2::3], strict=True):
                queue = bytes_to_str(key).rsplit(self.sep, 1)[0]
                self.connection._deliver(envelope_of(raw, queue, tag=bytes_to_str(tag)), queue)
        finally:
            self.registering_done = False


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with our channel."""

    Channel = Channel


def transport_for(broker_url: str) -> str | None:
    """Our transport for a Redis broker URL; None (kombu picks by scheme) for anything else."""
    scheme = broker_url.partition("://")[0]
    return TRANSPORT if scheme in ("redis", "rediss") else None


def pop_many_args(
    unacked_index: str, unacked_bodies: str, queues: list[str], *, want: int, now: float
) -> tuple[list[str], list[int | str]]:
    """broker_pop_many.lua's KEYS and ARGV: the queues in the order kombu polls them; `now` is
    kombu's index score (seconds, float, passed as its repr)."""
    return [unacked_index, unacked_bodies, *queues], [want, repr(now)]
