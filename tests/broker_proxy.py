"""A TCP proxy between a worker and its broker Redis that loses the reply to blocking pops.

Redis has taken the message off the queue when it answers a BRPOP, BLMOVE or BRPOPLPUSH; the
proxy closes both sides instead of forwarding that answer, as a Redis restart with the reply in
its output buffer, a dropped connection or a load balancer cutting in would. Only answers that
carry a message count (`$<len>` or `*<n>`, not the nil of a timeout or an empty array), and only
the first `drops`. Other commands can be watched instead (`watch`), and `on_drop` runs before
the connection closes (a test kills the worker there: a crash at that exact point).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

BLOCKING = (b"BRPOP\r\n", b"BLMOVE\r\n", b"BRPOPLPUSH\r\n")
CHUNK = 65536


def blocking_pop(request: bytes) -> bool:
    """A BRPOP, BLMOVE or BRPOPLPUSH."""
    return any(command in request.upper() for command in BLOCKING)


@dataclass
class _Link:
    """One client connection and its upstream; `watched`: a watched request awaits its reply."""

    client: socket.socket
    upstream: socket.socket
    watched: bool = False


@dataclass
class LossyProxy:
    """Listens on loopback; forwards to `upstream_port`; loses the first `drops` replies that
    carry data to requests `watch` picks (blocking pops by default), calling `on_drop` first."""

    upstream_port: int
    drops: int
    watch: Callable[[bytes], bool] = blocking_pop
    on_drop: Callable[[], object] | None = None
    port: int = 0
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socket.socket | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> LossyProxy:
        """Bind a free loopback port and accept in the background."""
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        server.settimeout(0.2)
        self._server, self.port = server, server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop accepting; open links end as their sockets close."""
        self._stopping.set()
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            link = _Link(client, upstream)
            threading.Thread(target=self._requests, args=(link,), daemon=True).start()
            threading.Thread(target=self._replies, args=(link,), daemon=True).start()

    def _requests(self, link: _Link) -> None:
        while data := _recv(link.client):
            link.watched = self.watch(data)
            if not _send(link.upstream, data):
                break
        _close(link)

    def _replies(self, link: _Link) -> None:
        while data := _recv(link.upstream):
            if link.watched and self._lose(data):
                if self.on_drop is not None:
                    self.on_drop()
                _close(link)
                return
            link.watched = False
            if not _send(link.client, data):
                break
        _close(link)

    def _lose(self, reply: bytes) -> bool:
        carries_message = reply[:1] in (b"$", b"*") and reply[1:3] not in (b"-1", b"0\r")
        with self._lock:
            if carries_message and self.dropped < self.drops:
                self.dropped += 1
                return True
        return False


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(CHUNK)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _close(link: _Link) -> None:
    for sock in (link.client, link.upstream):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


@contextlib.contextmanager
def lossy_proxy(
    upstream_port: int,
    drops: int,
    watch: Callable[[bytes], bool] = blocking_pop,
    on_drop: Callable[[], object] | None = None,
) -> Iterator[LossyProxy]:
    """A running `LossyProxy`, stopped at the end."""
    proxy = LossyProxy(upstream_port, drops, watch, on_drop).start()
    try:
        yield proxy
    finally:
        proxy.stop()
