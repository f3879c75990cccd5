"""SandboxControl: a small typed client for the sandbox's `/_sandbox` control API."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

import httpx

from zns_dev.sandbox.records import (
    AccountSpec,
    JourneyToken,
    OaLatency,
    OddSendAnswer,
    OddShape,
    Quota,
    RefreshAttempt,
    SandboxStats,
    ScriptedError,
    SentMessage,
    TemplateKind,
    TemplateSpec,
    WebhookDelivery,
)

DEFAULT_TIMEOUT_S = 10.0


class SandboxControl:
    """Inspect and steer a running sandbox (tests, the demo, benchmarks). HTTP errors raise."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- inspection --------------------------------------------------------------------------

    def stats(self) -> SandboxStats:
        """Counters: calls, sends, errors by code, faults, refreshes, reuses, quota per OA."""
        return SandboxStats.from_json(self._get("/_sandbox/stats"))

    def messages(self, phone: str | None = None) -> list[SentMessage]:
        """Messages the sandbox accepted, in order, optionally for one phone."""
        params = {"phone": phone} if phone is not None else None
        return [SentMessage(**item) for item in self._get("/_sandbox/messages", params)]

    def journey_tokens(self) -> list[JourneyToken]:
        """Journey tokens issued, in order."""
        return [JourneyToken(**item) for item in self._get("/_sandbox/journey-tokens")]

    def refreshes(self) -> list[RefreshAttempt]:
        """Every refresh attempt, in order."""
        return [RefreshAttempt(**item) for item in self._get("/_sandbox/refreshes")]

    def webhooks(self) -> list[WebhookDelivery]:
        """Webhook events sent (or given up on), in the order they finished."""
        return [WebhookDelivery(**item) for item in self._get("/_sandbox/webhooks")]

    def faults(self) -> dict[str, Any]:
        """The current runtime settings (latency, fault rates, night hours, ...)."""
        result: dict[str, Any] = self._get("/_sandbox/faults")
        return result

    # -- steering ----------------------------------------------------------------------------

    def reset(self) -> None:
        """All state back to the start-up config (one OA, no messages, wall-clock time)."""
        self._post("/_sandbox/reset")

    def set_faults(self, **settings: float | int | bool | Iterable[str] | None) -> dict[str, Any]:
        """Change runtime settings by their config names (fault_5xx=1.0, latency_ms=100, ...)."""
        body = {
            name: sorted(value) if isinstance(value, set | frozenset | list | tuple) else value
            for name, value in settings.items()
        }
        result: dict[str, Any] = self._post("/_sandbox/faults", body)
        return result

    def set_webhook(
        self,
        url: str | None,
        *,
        delay_ms: int | None = None,
        attempts: int | None = None,
        retry_ms: int | None = None,
    ) -> dict[str, Any]:
        """Send signed webhook events to `url` after each accepted send (None: stop)."""
        settings: dict[str, Any] = {"webhook_url": url}
        for name, value in (("delay_ms", delay_ms), ("attempts", attempts), ("retry_ms", retry_ms)):
            if value is not None:
                settings[f"webhook_{name}"] = value
        return self.set_faults(**settings)

    def reset_quota(self, app_id: str | None = None) -> dict[str, Quota]:
        """Remaining quota back to the daily quota (one OA or all)."""
        return _quotas(self._post("/_sandbox/quota/reset", {"app_id": app_id}))

    def set_quota(
        self, daily_quota: int, *, remaining: int | None = None, app_id: str | None = None
    ) -> dict[str, Quota]:
        """Set the daily quota and what remains today (default: all of it)."""
        body = {"daily_quota": daily_quota, "remaining": remaining, "app_id": app_id}
        return _quotas(self._post("/_sandbox/quota", body))

    def advance_clock(self, seconds: float) -> int:
        """Move the virtual clock forward; returns the new virtual time in epoch ms."""
        now_ms: int = self._post("/_sandbox/clock/advance", {"seconds": seconds})["now_ms"]
        return now_ms

    def script(
        self,
        error: int,
        *,
        times: int = 1,
        endpoint: str = "send",
        phone: str | None = None,
        template_id: str | int | None = None,
        message: str | None = None,
    ) -> None:
        """The next `times` matching calls answer `error` (HTTP 200) before anything else."""
        script = ScriptedError(
            error=error,
            times=times,
            endpoint=endpoint,
            phone=phone,
            template_id=None if template_id is None else str(template_id),
            message=message,
        )
        self._post("/_sandbox/script", script.model_dump())

    def odd_send_answer(self, shape: OddShape, *, times: int = 1) -> None:
        """The next `times` accepted sends answer `error: 0` in `shape` (still sent)."""
        self._post("/_sandbox/odd-answer", OddSendAnswer(shape=shape, times=times).model_dump())

    def register_template(
        self,
        template_id: str | int,
        kind: TemplateKind = "logistics",
        *,
        daily_limit: int | None = None,
    ) -> None:
        """Declare a template logistics / coach_bus / invalid, with an optional daily limit."""
        spec = TemplateSpec(template_id=str(template_id), kind=kind, daily_limit=daily_limit)
        self._post("/_sandbox/templates", spec.model_dump())

    def add_oa(
        self,
        app_id: str,
        *,
        secret_key: str | None = None,
        oa_id: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        daily_quota: int | None = None,
        latency_ms: int | None = None,
    ) -> AccountSpec:
        """Add an Official Account; unset credentials are derived from app_id and returned.
        `latency_ms`: its API calls' own latency (see `set_oa_latency`)."""
        spec = AccountSpec(
            app_id=app_id,
            secret_key=secret_key or f"{app_id}-secret",
            oa_id=oa_id or f"{app_id}-oa",
            access_token=access_token or f"{app_id}-access-token",
            refresh_token=refresh_token or f"{app_id}-refresh-token",
            daily_quota=daily_quota,
            latency_ms=latency_ms,
        )
        self._post("/_sandbox/oa", spec.model_dump())
        return spec

    def set_oa_latency(self, app_id: str, latency_ms: int | None) -> dict[str, int]:
        """Answer one OA's API calls (send, get-token, check-token, quota, status: the OA is
        told by their access token) `latency_ms` late, instead of the global `latency_ms`; None
        gives it the global one again. Stalls still add to it; the OAuth refresh keeps
        `oauth_latency_ms`; a reset forgets it. Returns every OA's own latency by app id."""
        body = OaLatency(app_id=app_id, latency_ms=latency_ms).model_dump()
        latencies: dict[str, int] = self._post("/_sandbox/oa/latency", body)
        return latencies

    def expire_access_tokens(self, app_id: str | None = None) -> int:
        """Expire the current access tokens (one OA or all) now; returns how many."""
        expired: int = self._post("/_sandbox/access-token/expire", {"app_id": app_id})["expired"]
        return expired

    # -- transport ---------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        response = self._http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.post(path, json=body if body is not None else {})
        response.raise_for_status()
        return response.json()


def _quotas(data: dict[str, dict[str, int]]) -> dict[str, Quota]:
    return {app_id: Quota(**quota) for app_id, quota in data.items()}
