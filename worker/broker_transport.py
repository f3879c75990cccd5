"""kombu's Redis transport, hardened for a Redis restart under load (Redis broker only).

Two kombu 5.7 behaviours lost or stopped work when the broker Redis restarted:

- A channel whose connection Celery already collected builds a new client from
  `self.connection.client`, which is then None: the AttributeError escapes kombu's connection-
  error handling (closing the channel, acking a message taken before the restart) and Celery
  treats it as unrecoverable: the worker exits. Here it is a `redis.ConnectionError`, which
  every caller already handles (an ack that fails leaves the message unacked in Redis, and the
  visibility sweep brings it back).
- A message is taken with BRPOP and recorded as unacked in a second call. If Redis stops in
  between, the message exists only in this process and kombu drops it. Here the second call is
  retried while Redis comes back (seconds), so the message is kept.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)
#: The `broker_transport` setting that selects this transport.
TRANSPORT = "worker.broker_transport:Transport"
#: Pauses between attempts to record a message just taken: ~6 s, a Redis restart.
APPEND_PAUSES_S = (0.1, 0.2, 0.4, 0.8, 1.5, 3.0)


class QoS(kombu_redis.QoS):
    """Records a message as unacked, riding out a Redis restart."""

    def append(self, message: Any, delivery_tag: str) -> None:
        """kombu's append, retried on connection errors."""
        for pause in (*APPEND_PAUSES_S, None):
            try:
                super().append(message, delivery_tag)
                return
            except redis.ConnectionError as exc:
                if pause is None:
                    log.critical(
                        "message %s taken but not recorded as unacked: %s", delivery_tag, exc
                    )
                    raise
                log.warning("broker Redis unreachable recording a message taken; retrying")
                time.sleep(pause)


class Channel(kombu_redis.Channel):
    """A closed channel reports a connection error, not an AttributeError."""

    QoS = QoS

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous)  # type: ignore[misc]  # not in the stub


class Transport(kombu_redis.Transport):
    """`redis://` and `rediss://` brokers, with the channel above."""

    Channel = Channel


def transport_for(broker_url: str) -> str | None:
    """Our transport for a Redis broker URL; None (kombu picks by scheme) for anything else."""
    scheme = broker_url.partition("://")[0]
    return TRANSPORT if scheme in ("redis", "rediss") else None
