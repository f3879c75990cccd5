"""One ZaloClient per thread, sharing one TLS context."""

from __future__ import annotations

import ssl
import threading

from worker.settings import Settings
from worker.zalo.client import ZaloClient

#: Connections per thread-local client: one request at a time per thread, plus a spare.
CONNECTIONS_PER_THREAD = 2


class ThreadLocalClients:
    """One ZaloClient per thread: a client shared by many threads serialises on its pool lock
    (docs/performance.md: shared vs per-thread clients)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # One TLS context for every client: building one per thread costs ~10 ms each.
        self._tls = ssl.create_default_context()
        self._local = threading.local()
        self._all: list[ZaloClient] = []
        self._lock = threading.Lock()

    def __call__(self) -> ZaloClient:
        client: ZaloClient | None = getattr(self._local, "client", None)
        if client is None:
            client = ZaloClient(
                api_base_url=self._settings.api_base_url,
                oauth_base_url=self._settings.oauth_base_url,
                http_settings=self._settings.http,
                max_connections=CONNECTIONS_PER_THREAD,
                verify=self._tls,
            )
            self._local.client = client
            with self._lock:
                self._all.append(client)
        return client

    def close(self) -> None:
        """Close every client this process made."""
        with self._lock:
            for client in self._all:
                client.close()
            self._all.clear()
