"""Signed webhook events from the sandbox, as Zalo sends them, to `webhook_url`.

After an accepted send, and `webhook_delay_ms` later: `event_journey_acknowledged` when it was
the journey token's first message (the journey is charged), then `user_received_message` (the
phone got it). At once: `change_oa_daily_quota` when the control API changes an OA's daily
quota, `event_journey_time_out` when it moves the clock past a journey token's expiry.

Each event is signed like Zalo's (`X-ZEvent-Signature: mac=sha256(app_id + body + timestamp +
key)`) and POSTed up to `webhook_attempts` times, the same body each time, with a doubling pause
from `webhook_retry_ms`, until a 2xx. All of it runs in background tasks: the send's answer never
waits for a webhook. `timestamp` is the wall clock (a receiver checks it against its own);
`delivery_time` is the sandbox's virtual clock, like every other sandbox time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

import aiohttp

from worker.webhooks.events import (
    CHANGE_OA_DAILY_QUOTA,
    JOURNEY_ACKNOWLEDGED,
    JOURNEY_TIME_OUT,
    USER_RECEIVED_MESSAGE,
)
from worker.webhooks.signature import HEADER, header_value
from zns_dev.sandbox.config import SandboxConfig
from zns_dev.sandbox.records import JourneyToken, SendReceipt, SentMessage, WebhookDelivery
from zns_dev.sandbox.state import SandboxState

POST_TIMEOUT_S: Final = 5.0  # Zalo gives a receiver about 2 s; we are more patient


def wall_ms() -> int:
    """The real wall clock in epoch ms (not the sandbox's virtual clock)."""
    return int(time.time() * 1000)


class WebhookSender:
    """Announces accepted sends to the configured webhook URL, in background tasks."""

    def __init__(self, state: SandboxState, *, now_ms: Callable[[], int] = wall_ms) -> None:
        self._state = state
        self._now_ms = now_ms
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def after_send(self, receipt: SendReceipt) -> None:
        """Schedule the events for one accepted send (nothing when no URL is configured)."""
        config = self._state.config
        if config.webhook_url is not None:
            self._spawn(self._announce(config, receipt))

    def after_quota_change(self, app_id: str, prev_daily: int, new_daily: int) -> None:
        """`change_oa_daily_quota` (`oaId` and `quota: {prev_value, new_value}`, as Zalo writes
        them), sent at once."""
        config = self._state.config
        if config.webhook_url is None:
            return
        fields = {
            "oaId": self._state.oa_id(app_id),
            "quota": {"prev_value": prev_daily, "new_value": new_daily},
        }
        subject = f"{prev_daily}->{new_daily}"
        self._spawn(self._deliver(config, CHANGE_OA_DAILY_QUOTA, app_id, subject, fields))

    def after_expiry(self, token: JourneyToken) -> None:
        """`event_journey_time_out` for a journey token the clock has just carried past its end."""
        config = self._state.config
        if config.webhook_url is None:
            return
        fields = {"oa_id": self._state.oa_id(token.app_id), "journey_id": token.journey_id}
        self._spawn(self._deliver(config, JOURNEY_TIME_OUT, token.app_id, token.journey_id, fields))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel_pending(self) -> None:
        """Drop every event not sent yet (a reset: nothing of the old state leaks into the new)."""
        for task in list(self._tasks):
            task.cancel()

    async def close(self) -> None:
        """Cancel what is pending and close the HTTP session."""
        self.cancel_pending()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _announce(self, config: SandboxConfig, receipt: SendReceipt) -> None:
        message = receipt.message
        await asyncio.sleep(config.webhook_delay_ms / 1000)
        app_id = message.app_id
        if receipt.first_of_journey:
            charged = self._charged(message)
            await self._deliver(config, JOURNEY_ACKNOWLEDGED, app_id, message.journey_id, charged)
        received = self._received(message)
        await self._deliver(config, USER_RECEIVED_MESSAGE, app_id, message.msg_id, received)

    def _charged(self, message: SentMessage) -> dict[str, Any]:
        return {"oa_id": self._state.oa_id(message.app_id), "journey_id": message.journey_id}

    def _received(self, message: SentMessage) -> dict[str, Any]:
        delivery = {"delivery_time": str(self._state.clock.now_ms()), "msg_id": message.msg_id}
        if message.tracking_id:
            delivery["tracking_id"] = message.tracking_id
        return {
            "sender": {"id": self._state.oa_id(message.app_id)},
            "recipient": {"id": message.phone},
            "message": delivery,
        }

    async def _deliver(
        self,
        config: SandboxConfig,
        event_name: str,
        app_id: str,
        subject: str,
        fields: dict[str, Any],
    ) -> None:
        timestamp = str(self._now_ms())
        payload = {"app_id": app_id, "event_name": event_name, **fields, "timestamp": timestamp}
        body = json.dumps(payload, separators=(",", ":")).encode()
        key = self._state.signing_key(app_id)
        headers = {
            "Content-Type": "application/json",
            HEADER: header_value(app_id=app_id, body=body, timestamp=timestamp, secret_key=key),
        }
        attempts, status = await self._post_until_ok(config, body, headers)
        ok = status is not None and 200 <= status < 300  # noqa: PLR2004
        self._state.record_webhook(
            WebhookDelivery(event_name, app_id, subject, int(timestamp), attempts, status, ok)
        )

    async def _post_until_ok(
        self, config: SandboxConfig, body: bytes, headers: dict[str, str]
    ) -> tuple[int, int | None]:
        assert config.webhook_url is not None
        status: int | None = None
        for attempt in range(1, config.webhook_attempts + 1):
            status = await self._post(config.webhook_url, body, headers)
            if status is not None and 200 <= status < 300:  # noqa: PLR2004
                return attempt, status
            if attempt < config.webhook_attempts:
                await asyncio.sleep(config.webhook_retry_ms * 2 ** (attempt - 1) / 1000)
        return config.webhook_attempts, status

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int | None:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout)
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status
        return None
