"""The sandbox's HTTP face: Zalo's API and OAuth routes on one port, plus `/_sandbox/*`.

Zalo routes go through one funnel (`_ZaloRoutes._funnel`): count the call, roll the fault
dice, wait (the calling OA's own latency, told by its `access_token` header, or the config's),
then either inflict the fault or run the rules in `SandboxState` and render the
answer with Zalo's quirks (HTTP 200 errors, numbers as strings, `"tokenType "`). The control
routes are never faulted, need no auth and refuse any client that is not on this machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zns_dev.sandbox.config import (
    CHECK_TOKEN,
    GET_TOKEN,
    QUOTA,
    REFRESH,
    RUNTIME_FIELDS,
    SEND,
    STATUS,
    SandboxConfig,
)
from zns_dev.sandbox.faults import Fault, FaultDice, FaultPlan
from zns_dev.sandbox.records import (
    AccountSpec,
    OaLatency,
    OddSendAnswer,
    ScriptedError,
    TemplateSpec,
    record_to_json,
)
from zns_dev.sandbox.state import API_MESSAGES, ApiFailure, OAuthFailure, SandboxState
from zns_dev.sandbox.webhooks import WebhookSender

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Body = dict[str, Any]

STATE_KEY: Final = web.AppKey("sandbox_state", SandboxState)
MESSAGE_DELIVERED: Final = 1  # /message/status: -1 unknown, 0 pending, 1 delivered
HTML_ERROR: Final = (
    "<html><head><title>{status} {reason}</title></head><body>"
    "<center><h1>{status} {reason}</h1></center><hr><center>nginx</center></body></html>"
)
REASONS: Final[Mapping[int, str]] = {
    429: "Too Many Requests",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
}


def create_app(config: SandboxConfig, *, now: Callable[[], float] = time.time) -> web.Application:
    """The sandbox as an aiohttp application with fresh state built from `config`."""
    state = SandboxState(config, now)
    dice = FaultDice(config.seed)
    webhooks = WebhookSender(state)
    app = web.Application()
    app[STATE_KEY] = state
    app.add_routes(_ZaloRoutes(state, dice, webhooks).routes())
    app.add_routes(_ControlRoutes(state, dice, webhooks).routes())

    async def close_webhooks(_app: web.Application) -> None:
        await webhooks.close()

    app.on_cleanup.append(close_webhooks)
    return app


def _json(body: object, status: int = 200) -> web.Response:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return web.Response(
        body=text.encode(), status=status, content_type="application/json", charset="utf-8"
    )


def _drop(request: web.Request) -> web.Response:
    """Close the connection without an answer; aiohttp discards the response we return."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)


async def _json_payload(request: web.Request) -> Body | None:
    """The JSON object in the body, or None when it is missing, not JSON or not an object."""
    raw = await request.read()
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _ms(value: int) -> str:
    """Zalo sends epoch-ms times and counts as strings."""
    return str(value)


class _ZaloRoutes:
    """Zalo's calls: get-token, send, check-token, quota, status, and the OAuth refresh."""

    def __init__(self, state: SandboxState, dice: FaultDice, webhooks: WebhookSender) -> None:
        self._state = state
        self._dice = dice
        self._webhooks = webhooks

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/journey/get-token", self._funnel(GET_TOKEN, self._get_token)),
            web.post("/message/template", self._funnel(SEND, self._send)),
            web.get("/journey/check-token", self._funnel(CHECK_TOKEN, self._check_token)),
            web.get("/message/quota", self._funnel(QUOTA, self._quota)),
            web.get("/message/status", self._funnel(STATUS, self._status)),
            web.post("/v4/oa/access_token", self._funnel(REFRESH, self._refresh)),
        ]

    def _funnel(self, endpoint: str, handler: Callable[[web.Request], Awaitable[Body]]) -> Handler:
        state = self._state
        dice = self._dice

        async def handle(request: web.Request) -> web.StreamResponse:
            state.count_call(endpoint)
            try:
                # Read the body before any delay: a client that gives up while we are slow
                # has still been heard, and its call is processed (as a real Zalo would).
                await request.read()
            except ConnectionResetError:
                return _drop(request)
            oa_latency_ms = state.oa_latency_ms(request.headers.get("access_token"))
            plan = dice.plan(state.config, endpoint, oa_latency_ms=oa_latency_ms)
            if plan.stalled:
                state.count_fault(Fault.STALL)
            if plan.delay_s:
                await asyncio.sleep(plan.delay_s)
            if plan.before is not None:
                return self._inflict(request, endpoint, plan)
            try:
                body = await handler(request)
            except ApiFailure as failure:
                body = self._error(endpoint, failure.code, failure.message)
            except OAuthFailure as failure:
                state.count_error(failure.code)
                body = _oauth_error(failure.code, failure.name, failure.description)
            if plan.drop_after:
                state.count_fault(Fault.DROP_AFTER_SEND)
                return _drop(request)
            return _json(body)

        return handle

    def _inflict(self, request: web.Request, endpoint: str, plan: FaultPlan) -> web.Response:
        fault = plan.before
        assert fault is not None
        self._state.count_fault(fault)
        if fault is Fault.DROP:
            return _drop(request)
        if fault is Fault.ERROR_100:
            return _json(self._error(endpoint, -100, API_MESSAGES[-100]))
        status = plan.http_status or 503
        reason = REASONS.get(status, "Error")
        headers = {"Retry-After": "1"} if status == 429 else None  # noqa: PLR2004
        return web.Response(
            text=HTML_ERROR.format(status=status, reason=reason),
            status=status,
            content_type="text/html",
            headers=headers,
        )

    def _error(self, endpoint: str, code: int, message: str) -> Body:
        self._state.count_error(code)
        if endpoint == REFRESH:
            return _oauth_error(code, message, message)
        return {"error": code, "message": message}

    def _scripted(self, endpoint: str, payload: Mapping[str, Any] | None = None) -> None:
        """Raise the next scripted error for this call, before any other processing."""
        fields = payload or {}
        script = self._state.take_script(endpoint, fields.get("phone"), fields.get("template_id"))
        if script is not None:
            raise ApiFailure(script.error, script.message)

    async def _get_token(self, request: web.Request) -> Body:
        payload = await _json_payload(request)
        self._scripted(GET_TOKEN, payload)
        token = self._state.create_journey_token(request.headers.get("access_token"), payload)
        return {
            "error": 0,
            "message": "Success",
            "token": token.token,
            "journey_id": token.journey_id,
        }

    async def _send(self, request: web.Request) -> Body:
        payload = await _json_payload(request)
        self._scripted(SEND, payload)
        headers = request.headers
        receipt = self._state.send(
            headers.get("access_token"), headers.get("journey_token"), payload
        )
        self._webhooks.after_send(receipt)
        message, quota = receipt.message, receipt.quota
        data = {
            "msg_id": message.msg_id,
            "sent_time": _ms(message.sent_time_ms),
            "quota": {
                "remainingQuota": str(quota.remaining_quota),
                "dailyQuota": str(quota.daily_quota),
            },
        }
        body: Body = {"error": 0, "message": "Success", "data": data}
        odd = self._state.take_odd_answer()
        return odd.apply(body) if odd else body

    async def _check_token(self, request: web.Request) -> Body:
        self._scripted(CHECK_TOKEN)
        headers = request.headers
        token = self._state.check_journey_token(
            headers.get("access_token"), headers.get("journey_token")
        )
        data = {
            "appId": token.app_id,
            "oaId": self._state.oa_id(token.app_id),
            "tokenType ": token.token_type,  # sic: Zalo's documented key has a trailing space
            "createdAt": _ms(token.created_at_ms),
            "expiredAt": _ms(token.expires_at_ms),
        }
        return {"error": 0, "message": "Success", "data": data}

    async def _quota(self, request: web.Request) -> Body:
        self._scripted(QUOTA)
        quota = self._state.quota(request.headers.get("access_token"))
        data = {
            "dailyQuota": str(quota.daily_quota),
            "remainingQuota": str(quota.remaining_quota),
            "estimatedCost": "0",
        }
        return {"error": 0, "message": "Success", "data": data}

    async def _status(self, request: web.Request) -> Body:
        self._scripted(STATUS)
        message = self._state.message_status(
            request.headers.get("access_token"), request.query.get("message_id")
        )
        data = {
            "status": MESSAGE_DELIVERED,
            "delivery_time": _ms(message.sent_time_ms),
            "message": "The message was delivered to the user's phone",
        }
        return {"error": 0, "message": "Success", "data": data}

    async def _refresh(self, request: web.Request) -> Body:
        form = await request.post()
        self._scripted(REFRESH)

        def field(name: str) -> str | None:
            value = form.get(name)
            return value if isinstance(value, str) else None

        pair = self._state.refresh(
            app_id=field("app_id"),
            secret_key=request.headers.get("secret_key"),
            refresh_token=field("refresh_token"),
            grant_type=field("grant_type"),
        )
        return {
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "expires_in": str(pair.expires_in_s),
        }


def _oauth_error(code: int, name: str, description: str) -> Body:
    return {"error": code, "error_name": name, "error_description": description}


# -- the control API ------------------------------------------------------------------------


class _AppIdBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app_id: str | None = None


class _QuotaBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app_id: str | None = None
    daily_quota: int = Field(ge=0)
    remaining: int | None = Field(default=None, ge=0)


class _ClockBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0)


def _is_local(request: web.Request) -> bool:
    remote = request.remote
    if remote is None:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


class _ControlRoutes:
    """`/_sandbox/*`: inspect what the sandbox received and steer what it does next."""

    def __init__(self, state: SandboxState, dice: FaultDice, webhooks: WebhookSender) -> None:
        self._state = state
        self._dice = dice
        self._webhooks = webhooks

    def routes(self) -> list[web.RouteDef]:
        guard = self._guard
        return [
            web.get("/_sandbox/stats", guard(self._stats)),
            web.get("/_sandbox/messages", guard(self._messages)),
            web.get("/_sandbox/journey-tokens", guard(self._journey_tokens)),
            web.get("/_sandbox/refreshes", guard(self._refreshes)),
            web.get("/_sandbox/webhooks", guard(self._webhook_deliveries)),
            web.get("/_sandbox/faults", guard(self._get_faults)),
            web.post("/_sandbox/faults", guard(self._set_faults)),
            web.post("/_sandbox/reset", guard(self._reset)),
            web.post("/_sandbox/quota/reset", guard(self._reset_quota)),
            web.post("/_sandbox/quota", guard(self._set_quota)),
            web.post("/_sandbox/clock/advance", guard(self._advance_clock)),
            web.post("/_sandbox/script", guard(self._script)),
            web.post("/_sandbox/odd-answer", guard(self._odd_answer)),
            web.post("/_sandbox/templates", guard(self._template)),
            web.post("/_sandbox/oa", guard(self._add_oa)),
            web.post("/_sandbox/oa/latency", guard(self._oa_latency)),
            web.post("/_sandbox/access-token/expire", guard(self._expire_access_tokens)),
        ]

    @staticmethod
    def _guard(handler: Callable[[web.Request], Awaitable[object]]) -> Handler:
        """Loopback clients only; bad input is HTTP 400 with {"error": reason}."""

        async def handle(request: web.Request) -> web.StreamResponse:
            if not _is_local(request):
                return _json({"error": "the control API answers loopback clients only"}, 403)
            try:
                return _json(await handler(request))
            except ValidationError as exc:
                return _json({"error": exc.errors(include_url=False, include_context=False)}, 400)
            except (KeyError, ValueError) as exc:
                reason = exc.args[0] if exc.args else type(exc).__name__
                return _json({"error": str(reason)}, 400)

        return handle

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        data = await _json_payload(request)
        if data is None:
            raise ValueError("the body must be a JSON object")
        return data

    async def _stats(self, _request: web.Request) -> object:
        return self._state.stats().to_json()

    async def _messages(self, request: web.Request) -> object:
        phone = request.query.get("phone")
        return [record_to_json(message) for message in self._state.messages(phone)]

    async def _journey_tokens(self, _request: web.Request) -> object:
        return [record_to_json(token) for token in self._state.journey_tokens()]

    async def _refreshes(self, _request: web.Request) -> object:
        return [record_to_json(attempt) for attempt in self._state.refreshes()]

    async def _webhook_deliveries(self, _request: web.Request) -> object:
        return [record_to_json(delivery) for delivery in self._state.webhooks()]

    async def _get_faults(self, _request: web.Request) -> object:
        config = self._state.config
        return {name: _jsonable(getattr(config, name)) for name in sorted(RUNTIME_FIELDS)}

    async def _set_faults(self, request: web.Request) -> object:
        changes = await self._body(request)
        unknown = set(changes) - RUNTIME_FIELDS
        if unknown:
            raise ValueError(
                f"not runtime settings: {sorted(unknown)}; use {sorted(RUNTIME_FIELDS)}"
            )
        self._state.update_settings(changes)
        return await self._get_faults(request)

    async def _reset(self, _request: web.Request) -> object:
        self._webhooks.cancel_pending()
        self._state.reset()
        self._dice.reseed(self._state.config.seed)
        return {"ok": True}

    async def _reset_quota(self, request: web.Request) -> object:
        body = _AppIdBody.model_validate(await self._body(request))
        self._state.reset_quota(body.app_id)
        return self._quota_snapshot()

    async def _set_quota(self, request: web.Request) -> object:
        body = _QuotaBody.model_validate(await self._body(request))
        before = self._state.stats().quota
        self._state.set_quota(body.daily_quota, body.remaining, body.app_id)
        for app_id, quota in self._state.stats().quota.items():
            if before[app_id].daily_quota != quota.daily_quota:
                self._webhooks.after_quota_change(
                    app_id, before[app_id].daily_quota, quota.daily_quota
                )
        return self._quota_snapshot()

    def _quota_snapshot(self) -> object:
        return self._state.stats().to_json()["quota"]

    async def _advance_clock(self, request: web.Request) -> object:
        body = _ClockBody.model_validate(await self._body(request))
        before_ms = self._state.clock.now_ms()
        self._state.clock.advance(body.seconds)
        after_ms = self._state.clock.now_ms()
        for token in self._state.journey_tokens():
            if before_ms < token.expires_at_ms <= after_ms:
                self._webhooks.after_expiry(token)
        return {"clock_offset_s": self._state.clock.offset_s, "now_ms": self._state.clock.now_ms()}

    async def _script(self, request: web.Request) -> object:
        self._state.add_script(ScriptedError.model_validate(await self._body(request)))
        return {"ok": True}

    async def _odd_answer(self, request: web.Request) -> object:
        self._state.add_odd_answer(OddSendAnswer.model_validate(await self._body(request)))
        return {"ok": True}

    async def _template(self, request: web.Request) -> object:
        self._state.add_template(TemplateSpec.model_validate(await self._body(request)))
        return {"ok": True}

    async def _add_oa(self, request: web.Request) -> object:
        self._state.add_account(AccountSpec.model_validate(await self._body(request)))
        return {"ok": True}

    async def _oa_latency(self, request: web.Request) -> object:
        body = OaLatency.model_validate(await self._body(request))
        return self._state.set_latency(body.app_id, body.latency_ms)

    async def _expire_access_tokens(self, request: web.Request) -> object:
        body = _AppIdBody.model_validate(await self._body(request))
        return {"expired": self._state.expire_access_tokens(body.app_id)}


def _jsonable(value: object) -> object:
    if isinstance(value, frozenset | set):
        return sorted(value)
    return value
