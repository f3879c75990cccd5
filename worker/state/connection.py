"""Clients of the state Redis that count their round trips (`zns_redis_round_trips_total`)."""

from __future__ import annotations

from typing import Any

import redis

from worker import metrics


class _Counting:
    """Counts round trips: redis-py writes each command, pipeline or script call as one packet."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        metrics.REDIS_ROUND_TRIPS.inc()
        super().send_packed_command(command, check_health)  # type: ignore[misc]


class CountingConnection(_Counting, redis.Connection):
    """TCP connection that counts round trips."""


class CountingSSLConnection(_Counting, redis.SSLConnection):
    """TLS connection that counts round trips."""


class CountingUnixConnection(_Counting, redis.UnixDomainSocketConnection):
    """Unix-socket connection that counts round trips."""


def _connection_class(url: str) -> type[redis.Connection] | type[redis.UnixDomainSocketConnection]:
    if url.startswith("rediss://"):
        return CountingSSLConnection
    if url.startswith("unix://"):
        return CountingUnixConnection
    return CountingConnection


#: Read buffer of each state-Redis connection (redis-py's default: 64 KiB).
READ_BUFFER_BYTES = 4096


def redis_client(url: str, *, max_connections: int = 256) -> redis.Redis:
    """A thread-safe Redis client returning str, with a bounded, blocking pool."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
        # Our replies are small (a Lua reply, a token hash): a 4 KiB read buffer per connection
        # instead of 64 KiB, for the ~2 connections per worker thread (a larger reply is read in
        # several reads).
        socket_read_size=READ_BUFFER_BYTES,
        connection_class=_connection_class(url),
    )
    return redis.Redis(connection_pool=pool)
