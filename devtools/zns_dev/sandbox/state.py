"""The sandbox Zalo's memory: accounts, tokens, templates, messages received and counters.

No HTTP in here. Each Zalo call is a method that takes plain values and either returns a
record or raises one of

    ApiFailure      the API host's refusal: {"error": code, "message": ...} (HTTP 200)
    OAuthFailure    the OAuth host's refusal: {"error", "error_name", "error_description"}

Time comes from an injected `now()` plus a virtual offset (`Clock`), so token expiry, night
hours and the midnight quota reset are tested by moving the clock, never by sleeping.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from zns_dev.sandbox.config import SandboxConfig
from zns_dev.sandbox.records import (
    DEFAULT_TOKEN_TYPE,
    TOKEN_TYPES,
    AccountSpec,
    JourneyToken,
    OddSendAnswer,
    Quota,
    RefreshAttempt,
    SandboxStats,
    ScriptedError,
    SendReceipt,
    SentMessage,
    TemplateKind,
    TemplateSpec,
    TokenPair,
    WebhookDelivery,
    template_key,
)

# Asia/Ho_Chi_Minh is UTC+7 all year (no DST since 1975), so plain arithmetic is exact.
VIETNAM_UTC_OFFSET_S: Final = 7 * 3600
DAY_S: Final = 86_400
HOUR_S: Final = 3_600
NIGHT_STARTS_HOUR: Final = 22
NIGHT_ENDS_HOUR: Final = 6
MAX_TRACKING_ID_LEN: Final = 48
PHONE_DIGITS: Final = 11  # "84" + 9 digits


API_MESSAGES: Final[Mapping[int, str]] = {
    -100: "Unknown error, please try again later",
    -107: "Message id is invalid",
    -108: "Phone number is invalid",
    -109: "Template id is invalid",
    -111: "Template data is empty",
    -122: "Request body is not a valid JSON object",
    -124: "Access token is invalid",
    -132: "Parameter invalid",
    -133: "Cannot send ZNS messages between 22:00 and 06:00",
    -144: "OA has exceeded its daily ZNS quota",
    -147: "Template has exceeded its daily quota",
    -148: "Journey token is missing",
    -149: "Journey token is invalid",
    -1491: "Journey token type does not match the template type",
    -150: "Journey token has expired",
}

OAUTH_BAD_PARAMETER: Final = -14001
OAUTH_BAD_APP: Final = -14002
OAUTH_BAD_REFRESH_TOKEN: Final = -14014


class ApiFailure(Exception):
    """The API host refuses a call: HTTP 200 with {"error": code, "message": message}."""

    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        self.message = message if message is not None else API_MESSAGES.get(code, "Error")
        super().__init__(f"{code}: {self.message}")


class OAuthFailure(Exception):
    """The OAuth host refuses a refresh, in OAuth's own shape (also with HTTP 200)."""

    def __init__(self, code: int, name: str, description: str) -> None:
        self.code = code
        self.name = name
        self.description = description
        super().__init__(f"{code}: {name}")


def vietnam_day(epoch_s: float) -> int:
    """The day number in Vietnam for an epoch time: it changes at midnight Asia/Ho_Chi_Minh."""
    return int((epoch_s + VIETNAM_UTC_OFFSET_S) // DAY_S)


def is_vietnam_night(epoch_s: float) -> bool:
    """True between 22:00 and 06:00 Asia/Ho_Chi_Minh, when Zalo refuses sends with -133."""
    hour = int((epoch_s + VIETNAM_UTC_OFFSET_S) % DAY_S // HOUR_S)
    return hour >= NIGHT_STARTS_HOUR or hour < NIGHT_ENDS_HOUR


def is_valid_phone(phone: object) -> bool:
    """Zalo's own check: "84" followed by 9 digits."""
    return (
        isinstance(phone, str)
        and len(phone) == PHONE_DIGITS
        and phone.startswith("84")
        and phone.isascii()
        and phone.isdigit()
    )


def is_valid_tracking_id(tracking_id: object) -> bool:
    """Absent, or at most 48 characters without special ones (letters, digits, '-', '_')."""
    if tracking_id is None or tracking_id == "":
        return True
    if not isinstance(tracking_id, str) or len(tracking_id) > MAX_TRACKING_ID_LEN:
        return False
    return tracking_id.isascii() and tracking_id.replace("-", "a").replace("_", "a").isalnum()


class Clock:
    """Wall time plus a virtual offset that tests and the control API move forward."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self.offset_s = 0.0

    def now(self) -> float:
        """Virtual epoch seconds."""
        return self._now() + self.offset_s

    def now_ms(self) -> int:
        """Virtual epoch milliseconds, as Zalo reports times."""
        return int(self.now() * 1000)

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward (never back: tokens do not un-expire)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset_s += seconds

    def reset(self) -> None:
        """Back to wall time."""
        self.offset_s = 0.0


# -- internal state ------------------------------------------------------------------------


@dataclass(slots=True)
class AccessToken:
    """An OA access token: valid until `expires_at` (and `access_token_max_sends`)."""

    token: str
    app_id: str
    expires_at: float
    sends: int = 0


@dataclass(slots=True)
class OfficialAccount:
    """An OA: app credentials, the one live refresh token, and today's quota."""

    app_id: str
    secret_key: str
    oa_id: str
    refresh_token: str
    refresh_token_expires_at: float
    daily_quota: int
    remaining_quota: int
    quota_day: int
    latency_ms: int | None = None  # its API calls' latency; None: the config's latency_ms
    consumed_refresh_tokens: set[str] = field(default_factory=set)
    template_sends_today: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class Counters:
    """Running totals for the stats endpoint."""

    calls: Counter[str] = field(default_factory=Counter)
    errors: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    sends_accepted: int = 0
    journey_tokens_created: int = 0
    journey_tokens_used: int = 0
    duplicate_tracking_ids: int = 0
    refresh_successes: int = 0
    refresh_failures: int = 0
    refresh_token_reuses: int = 0


class SandboxState:
    """Everything the sandbox knows, and the rules of each Zalo call."""

    def __init__(self, config: SandboxConfig, now: Callable[[], float] = time.time) -> None:
        self._initial = config
        self.clock = Clock(now)
        self.reset()

    # -- control ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything: back to the start-up config, one OA, wall time."""
        self.config = self._initial
        self.clock.reset()
        self.counters = Counters()
        self._accounts: dict[str, OfficialAccount] = {}
        self._access_tokens: dict[str, AccessToken] = {}
        self._journey_tokens: dict[str, JourneyToken] = {}
        self._templates: dict[str, TemplateSpec] = {}
        self._messages: list[SentMessage] = []
        self._messages_by_id: dict[str, SentMessage] = {}
        self._tracking_ids: set[tuple[str, str]] = set()
        self._refreshes: list[RefreshAttempt] = []
        self._scripts: list[ScriptedError] = []
        self._odd_answers: list[OddSendAnswer] = []
        self._webhooks: list[WebhookDelivery] = []
        config = self._initial
        self.add_account(
            AccountSpec(
                app_id=config.app_id,
                secret_key=config.secret_key,
                oa_id=config.oa_id,
                access_token=config.access_token,
                refresh_token=config.refresh_token,
            )
        )

    def update_settings(self, changes: Mapping[str, object]) -> SandboxConfig:
        """Change runtime settings (latency, fault rates, ...); the rest needs a restart."""
        merged = {**self.config.model_dump(), **changes}
        self.config = SandboxConfig.model_validate(merged)
        return self.config

    def add_account(self, spec: AccountSpec) -> None:
        """Add (or replace) an OA with a fresh access token and refresh token."""
        now = self.clock.now()
        daily = self.config.daily_quota if spec.daily_quota is None else spec.daily_quota
        self._accounts[spec.app_id] = OfficialAccount(
            app_id=spec.app_id,
            secret_key=spec.secret_key,
            oa_id=spec.oa_id,
            refresh_token=spec.refresh_token,
            refresh_token_expires_at=now + self.config.refresh_token_ttl_s,
            daily_quota=daily,
            remaining_quota=daily,
            quota_day=vietnam_day(now),
            latency_ms=spec.latency_ms,
        )
        self._issue_access_token(spec.app_id, spec.access_token)

    def set_latency(self, app_id: str, latency_ms: int | None) -> dict[str, int]:
        """Give one OA's API calls a latency of their own (None: the config's again); returns
        every OA's own latency."""
        self._select_accounts(app_id)[0].latency_ms = latency_ms
        return self.latencies()

    def latencies(self) -> dict[str, int]:
        """The OAs with a latency of their own, by app id."""
        return {
            app_id: account.latency_ms
            for app_id, account in self._accounts.items()
            if account.latency_ms is not None
        }

    def oa_latency_ms(self, access_token: str | None) -> int | None:
        """The latency of the OA this access token belongs to (even expired: it still names
        its OA), or None for an unknown token or an OA without a latency of its own."""
        token = self._access_tokens.get(access_token or "")
        if token is None:
            return None
        return self._accounts[token.app_id].latency_ms

    def add_template(self, spec: TemplateSpec) -> None:
        """Register a template's family or mark it invalid; unknown templates are logistics."""
        self._templates[spec.template_id] = spec

    def add_script(self, script: ScriptedError) -> None:
        """Queue a scripted error for the next matching calls."""
        self._scripts.append(script)

    def take_script(
        self, endpoint: str, phone: object = None, template_id: object = None
    ) -> ScriptedError | None:
        """The first scripted error matching this call, consuming one of its `times`."""
        for index, script in enumerate(self._scripts):
            if script.matches(endpoint, phone, template_id):
                if script.times <= 1:
                    del self._scripts[index]
                else:
                    self._scripts[index] = script.model_copy(update={"times": script.times - 1})
                return script
        return None

    def add_odd_answer(self, odd: OddSendAnswer) -> None:
        """Queue an odd answer for the next accepted sends."""
        self._odd_answers.append(odd)

    def take_odd_answer(self) -> OddSendAnswer | None:
        """The odd answer for this accepted send, consuming one of its `times`."""
        if not self._odd_answers:
            return None
        odd = self._odd_answers[0]
        if odd.times <= 1:
            del self._odd_answers[0]
        else:
            self._odd_answers[0] = odd.model_copy(update={"times": odd.times - 1})
        return odd

    def reset_quota(self, app_id: str | None = None) -> None:
        """Today's remaining quota (and template limits) back to the daily quota."""
        for account in self._select_accounts(app_id):
            account.remaining_quota = account.daily_quota
            account.template_sends_today.clear()

    def set_quota(
        self, daily_quota: int, remaining: int | None = None, app_id: str | None = None
    ) -> None:
        """Set an OA's daily quota and what remains of it today (default: all of it)."""
        for account in self._select_accounts(app_id):
            account.daily_quota = daily_quota
            account.remaining_quota = daily_quota if remaining is None else remaining

    def expire_access_tokens(self, app_id: str | None = None) -> int:
        """Expire every current access token of one OA (or all OAs) now; returns how many."""
        wanted = {account.app_id for account in self._select_accounts(app_id)}
        now = self.clock.now()
        expired = 0
        for token in self._access_tokens.values():
            if token.app_id in wanted and token.expires_at > now:
                token.expires_at = now
                expired += 1
        return expired

    def _select_accounts(self, app_id: str | None) -> list[OfficialAccount]:
        if app_id is None:
            return list(self._accounts.values())
        if app_id not in self._accounts:
            raise KeyError(f"unknown app_id {app_id!r}")
        return [self._accounts[app_id]]

    # -- inspection ------------------------------------------------------------------------

    def stats(self) -> SandboxStats:
        """A snapshot of every counter and each OA's quota."""
        counters = self.counters
        for account in self._accounts.values():
            self._roll_day(account)
        return SandboxStats(
            calls=dict(counters.calls),
            sends_accepted=counters.sends_accepted,
            errors=dict(counters.errors),
            faults=dict(counters.faults),
            journey_tokens_created=counters.journey_tokens_created,
            journey_tokens_used=counters.journey_tokens_used,
            duplicate_tracking_ids=counters.duplicate_tracking_ids,
            refresh_attempts=len(self._refreshes),
            refresh_successes=counters.refresh_successes,
            refresh_failures=counters.refresh_failures,
            refresh_token_reuses=counters.refresh_token_reuses,
            quota={
                app_id: Quota(account.daily_quota, account.remaining_quota)
                for app_id, account in self._accounts.items()
            },
            clock_offset_s=self.clock.offset_s,
            now_ms=self.clock.now_ms(),
        )

    def messages(self, phone: str | None = None) -> list[SentMessage]:
        """Accepted messages in arrival order, optionally for one phone."""
        if phone is None:
            return list(self._messages)
        return [message for message in self._messages if message.phone == phone]

    def journey_tokens(self) -> list[JourneyToken]:
        """Journey tokens issued, in issue order."""
        return list(self._journey_tokens.values())

    def refreshes(self) -> list[RefreshAttempt]:
        """Every refresh attempt, in order."""
        return list(self._refreshes)

    def oa_id(self, app_id: str) -> str:
        """The Official Account id behind an app id."""
        return self._accounts[app_id].oa_id

    def signing_key(self, app_id: str) -> str:
        """The key that signs this OA's webhook events (the sandbox uses the app's secret)."""
        return self._accounts[app_id].secret_key

    def webhooks(self) -> list[WebhookDelivery]:
        """Webhook events sent (or given up on), in the order they finished."""
        return list(self._webhooks)

    def record_webhook(self, delivery: WebhookDelivery) -> None:
        """Remember how one webhook event went."""
        self._webhooks.append(delivery)

    def count_call(self, endpoint: str) -> None:
        """Count one call to a Zalo endpoint."""
        self.counters.calls[endpoint] += 1

    def count_error(self, code: int) -> None:
        """Count one error response by code."""
        self.counters.errors[code] += 1

    def count_fault(self, kind: str) -> None:
        """Count one injected fault by kind."""
        self.counters.faults[kind] += 1

    # -- the Zalo API ----------------------------------------------------------------------

    def authenticate(self, access_token: str | None) -> AccessToken:
        """The access token's record, or -124 when it is unknown, expired or used up."""
        token = self._access_tokens.get(access_token or "")
        if token is None or token.expires_at <= self.clock.now():
            raise ApiFailure(-124)
        limit = self.config.access_token_max_sends
        if limit is not None and token.sends >= limit:
            raise ApiFailure(-124)
        return token

    def create_journey_token(
        self, access_token: str | None, payload: Mapping[str, Any] | None
    ) -> JourneyToken:
        """POST /journey/get-token: a new token for one phone, living 7 or 30 days by type."""
        auth = self.authenticate(access_token)
        if payload is None:
            raise ApiFailure(-122)
        phone = payload.get("phone")
        if not is_valid_phone(phone):
            raise ApiFailure(-108)
        token_type = payload.get("token_type") or DEFAULT_TOKEN_TYPE
        if token_type not in TOKEN_TYPES:
            raise ApiFailure(-132, "Parameter invalid: token_type")
        now_ms = self.clock.now_ms()
        token = JourneyToken(
            token=secrets.token_urlsafe(24),
            journey_id=secrets.token_hex(8),
            app_id=auth.app_id,
            phone=str(phone),
            token_type=str(token_type),
            created_at_ms=now_ms,
            expires_at_ms=now_ms + TOKEN_TYPES[token_type][1] * DAY_S * 1000,
        )
        self._journey_tokens[token.token] = token
        self.counters.journey_tokens_created += 1
        return token

    def send(
        self,
        access_token: str | None,
        journey_token: str | None,
        payload: Mapping[str, Any] | None,
    ) -> SendReceipt:
        """POST /message/template: validate like Zalo, spend one quota, record the message."""
        auth = self.authenticate(access_token)
        if not journey_token:
            raise ApiFailure(-148)
        if payload is None:
            raise ApiFailure(-122)
        phone = payload.get("phone")
        if not is_valid_phone(phone):
            raise ApiFailure(-108)
        token = self._live_journey_token(auth.app_id, journey_token, phone)
        template_id = self._check_template(payload.get("template_id"), token)
        template_data = payload.get("template_data")
        if not isinstance(template_data, dict) or not template_data:
            raise ApiFailure(-111)
        tracking_id = payload.get("tracking_id")
        if not is_valid_tracking_id(tracking_id):
            raise ApiFailure(-132, "Parameter invalid: tracking_id")
        if self.config.night_hours and is_vietnam_night(self.clock.now()):
            raise ApiFailure(-133)
        account = self._accounts[auth.app_id]
        self._spend_quota(account, template_id)
        auth.sends += 1
        first = token.messages_sent == 0
        message = self._record_message(account, token, template_id, template_data, tracking_id)
        return SendReceipt(message, Quota(account.daily_quota, account.remaining_quota), first)

    def check_journey_token(
        self, access_token: str | None, journey_token: str | None
    ) -> JourneyToken:
        """GET /journey/check-token: the token's record (-148/-149/-150 like a send)."""
        auth = self.authenticate(access_token)
        if not journey_token:
            raise ApiFailure(-148)
        return self._live_journey_token(auth.app_id, journey_token, phone=None)

    def quota(self, access_token: str | None) -> Quota:
        """GET /message/quota: today's quota; costs nothing."""
        account = self._accounts[self.authenticate(access_token).app_id]
        self._roll_day(account)
        return Quota(account.daily_quota, account.remaining_quota)

    def message_status(self, access_token: str | None, message_id: str | None) -> SentMessage:
        """GET /message/status: a message this OA sent, or -107."""
        auth = self.authenticate(access_token)
        message = self._messages_by_id.get(message_id or "")
        if message is None or message.app_id != auth.app_id:
            raise ApiFailure(-107)
        return message

    # -- the OAuth host --------------------------------------------------------------------

    def refresh(
        self,
        *,
        app_id: str | None,
        secret_key: str | None,
        refresh_token: str | None,
        grant_type: str | None,
    ) -> TokenPair:
        """POST /v4/oa/access_token: rotate the pair; the old refresh token is then consumed."""
        account = self._accounts.get(app_id or "")
        reused = account is not None and (refresh_token or "") in account.consumed_refresh_tokens
        try:
            pair = self._rotate(account, secret_key, refresh_token, grant_type, reused=reused)
        except OAuthFailure as failure:
            self.counters.refresh_failures += 1
            self.counters.refresh_token_reuses += reused
            self._log_refresh(app_id, refresh_token, failure.code, failure.name, reused=reused)
            raise
        self.counters.refresh_successes += 1
        self._log_refresh(app_id, refresh_token, 0, "ok", reused=False)
        return pair

    def _rotate(
        self,
        account: OfficialAccount | None,
        secret_key: str | None,
        refresh_token: str | None,
        grant_type: str | None,
        *,
        reused: bool,
    ) -> TokenPair:
        if grant_type != "refresh_token":
            raise OAuthFailure(
                OAUTH_BAD_PARAMETER, "Invalid parameter", "grant_type must be refresh_token"
            )
        if account is None or not secrets.compare_digest(secret_key or "", account.secret_key):
            raise OAuthFailure(
                OAUTH_BAD_APP, "Invalid app_id or secret_key", "app_id or secret_key is invalid"
            )
        now = self.clock.now()
        if reused and self.config.refresh_reuse_revokes:
            account.refresh_token = ""  # the grant is gone until an admin re-authorises
        if (
            not refresh_token
            or refresh_token != account.refresh_token
            or account.refresh_token_expires_at <= now
        ):
            raise OAuthFailure(
                OAUTH_BAD_REFRESH_TOKEN,
                "Invalid refresh token",
                "Refresh token is invalid, expired or already used",
            )
        account.consumed_refresh_tokens.add(refresh_token)
        account.refresh_token = secrets.token_urlsafe(32)
        account.refresh_token_expires_at = now + self.config.refresh_token_ttl_s
        access = self._issue_access_token(account.app_id, secrets.token_urlsafe(32))
        return TokenPair(access.token, account.refresh_token, self.config.access_token_ttl_s)

    def _log_refresh(
        self,
        app_id: str | None,
        refresh_token: str | None,
        error: int,
        outcome: str,
        *,
        reused: bool,
    ) -> None:
        self._refreshes.append(
            RefreshAttempt(
                at_ms=self.clock.now_ms(),
                app_id=app_id or "",
                refresh_token=refresh_token or "",
                error=error,
                outcome=outcome,
                reused_consumed=reused,
            )
        )

    # -- helpers ---------------------------------------------------------------------------

    def _issue_access_token(self, app_id: str, value: str) -> AccessToken:
        token = AccessToken(value, app_id, self.clock.now() + self.config.access_token_ttl_s)
        self._access_tokens[value] = token
        return token

    def _live_journey_token(self, app_id: str, value: str, phone: object) -> JourneyToken:
        token = self._journey_tokens.get(value)
        if token is None or token.app_id != app_id or (phone is not None and token.phone != phone):
            raise ApiFailure(-149)
        if token.expires_at_ms <= self.clock.now_ms():
            raise ApiFailure(-150)
        return token

    def _check_template(self, template_id: object, token: JourneyToken) -> str:
        key = template_key(template_id)
        spec = self._templates.get(key) if key is not None else None
        kind: TemplateKind = spec.kind if spec is not None else "logistics"
        if key is None or kind == "invalid":
            raise ApiFailure(-109)
        if kind != token.family:
            raise ApiFailure(-1491)
        return key

    def _roll_day(self, account: OfficialAccount) -> None:
        """Zalo's daily quota comes back at midnight Vietnam time."""
        today = vietnam_day(self.clock.now())
        if today != account.quota_day:
            account.quota_day = today
            account.remaining_quota = account.daily_quota
            account.template_sends_today.clear()

    def _spend_quota(self, account: OfficialAccount, template_id: str) -> None:
        self._roll_day(account)
        if account.remaining_quota <= 0:
            raise ApiFailure(-144)
        spec = self._templates.get(template_id)
        if spec is not None and spec.daily_limit is not None:
            if account.template_sends_today[template_id] >= spec.daily_limit:
                raise ApiFailure(-147)
            account.template_sends_today[template_id] += 1
        account.remaining_quota -= 1

    def _record_message(
        self,
        account: OfficialAccount,
        token: JourneyToken,
        template_id: str,
        template_data: dict[str, Any],
        tracking_id: str | None,
    ) -> SentMessage:
        message = SentMessage(
            msg_id=secrets.token_hex(16),
            app_id=account.app_id,
            phone=token.phone,
            template_id=template_id,
            template_data=template_data,
            tracking_id=tracking_id,
            journey_id=token.journey_id,
            sent_time_ms=self.clock.now_ms(),
        )
        self._messages.append(message)
        self._messages_by_id[message.msg_id] = message
        counters = self.counters
        counters.sends_accepted += 1
        if token.messages_sent == 0:
            counters.journey_tokens_used += 1
        token.messages_sent += 1
        if tracking_id:
            key = (account.app_id, tracking_id)
            if key in self._tracking_ids:
                counters.duplicate_tracking_ids += 1
            self._tracking_ids.add(key)
        return message
