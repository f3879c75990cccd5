"""ZaloClient: the only code that speaks HTTP to Zalo.

Every call goes through one funnel, `_request`, which turns transport failures, HTTP statuses and
JSON `error` codes into the exception tree of `worker.errors`. Tokens travel only in headers and
never appear in an exception message or repr.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from importlib.metadata import version
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from worker.errors import (
    ZaloBadResponse,
    ZaloConnectError,
    ZaloDisconnected,
    ZaloError,
    ZaloHTTPError,
    ZaloOAuthError,
    ZaloRateLimited,
    ZaloServerError,
    ZaloTimeout,
    ZaloTransportError,
)
from worker.settings import DEFAULT_TOKEN_TYPE, HttpSettings
from worker.zalo.codes import api_error
from worker.zalo.models import (
    AccessTokenPair,
    JourneyToken,
    MessageStatus,
    Quota,
    SendResult,
    TokenInfo,
)

GET_TOKEN = "/journey/get-token"
SEND_TEMPLATE = "/message/template"
CHECK_TOKEN = "/journey/check-token"
QUOTA = "/message/quota"
MESSAGE_STATUS = "/message/status"
REFRESH = "/v4/oa/access_token"

DEFAULT_RETRY_AFTER_S = 5.0  # HTTP 429 without Retry-After: a short, shared cool-off
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500
BODY_EXCERPT_CHARS = 120
DEFAULT_HEADERS = {"user-agent": f"zns-journey-worker/{version('zns-journey-worker')}"}

log = logging.getLogger(__name__)
Model = TypeVar("Model", bound=BaseModel)
Json = dict[str, Any]


def timeout_from(settings: HttpSettings) -> httpx.Timeout:
    """httpx timeouts from settings: every phase bounded."""
    return httpx.Timeout(
        connect=settings.connect_timeout_s,
        read=settings.read_timeout_s,
        write=settings.write_timeout_s,
        pool=settings.pool_timeout_s,
    )


class ZaloClient:
    """Typed calls to the ZNS Journey API and the OAuth host."""

    def __init__(
        self,
        *,
        api_base_url: str,
        oauth_base_url: str,
        http_settings: HttpSettings | None = None,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = 100,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._api_base_url = api_base_url.rstrip("/")
        self._oauth_base_url = oauth_base_url.rstrip("/")
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        #: Requests go straight to the transport (the connection pool): httpx.Client's layer
        #: (URL and header merging, cookies, auth and redirect loops, hooks) is not used here and
        #: cost a quarter of each send's CPU. No redirects are followed, as before.
        self._transport = transport or httpx.HTTPTransport(limits=limits, verify=verify)
        self._timeout = {"timeout": timeout_from(http_settings or HttpSettings()).as_dict()}

    def __repr__(self) -> str:
        return f"ZaloClient(api={self._api_base_url!r}, oauth={self._oauth_base_url!r})"

    def __enter__(self) -> ZaloClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self._transport.close()

    # -- the ZNS Journey API ------------------------------------------------------------------

    def get_journey_token(
        self, access_token: SecretStr, *, phone: str, token_type: str | None = None
    ) -> JourneyToken:
        """Create a journey token for `phone` (billed when its first message is sent)."""
        body = self._api(
            "POST",
            GET_TOKEN,
            access_token,
            json={"phone": phone, "token_type": token_type or DEFAULT_TOKEN_TYPE},
        )
        return _parse(JourneyToken, body, GET_TOKEN)

    def send_template(
        self,
        access_token: SecretStr,
        journey_token: SecretStr,
        *,
        phone: str,
        template_id: str,
        template_data: Mapping[str, Any],
        tracking_id: str,
    ) -> SendResult:
        """Send one template message with a journey token."""
        payload = {
            "phone": phone,
            "template_id": template_id,
            "template_data": dict(template_data),
            "tracking_id": tracking_id,
        }
        body = self._api(
            "POST",
            SEND_TEMPLATE,
            access_token,
            json=payload,
            extra_headers={"journey_token": journey_token.get_secret_value()},
        )
        return _accepted_send(body)

    def check_journey_token(self, access_token: SecretStr, journey_token: SecretStr) -> TokenInfo:
        """What Zalo knows of a journey token: type, creation and expiry."""
        body = self._api(
            "GET",
            CHECK_TOKEN,
            access_token,
            extra_headers={"journey_token": journey_token.get_secret_value()},
        )
        return _parse(TokenInfo, _data(body, CHECK_TOKEN), CHECK_TOKEN)

    def quota(self, access_token: SecretStr) -> Quota:
        """The OA's daily quota (costs no quota). Its remainingQuota is what this call is for:
        an answer without a readable one is a bad response (a send's quota figures are only
        informative, see `SendResult`)."""
        body = self._api("GET", QUOTA, access_token)
        quota = _parse(Quota, _data(body, QUOTA), QUOTA)
        if quota.remaining_quota is None:
            raise ZaloBadResponse(f"no readable remainingQuota on {QUOTA}", endpoint=QUOTA)
        return quota

    def message_status(self, access_token: SecretStr, message_id: str) -> MessageStatus:
        """Delivery status of a sent message."""
        body = self._api("GET", MESSAGE_STATUS, access_token, params={"message_id": message_id})
        return _parse(MessageStatus, _data(body, MESSAGE_STATUS), MESSAGE_STATUS)

    # -- OAuth -----------------------------------------------------------------------------------

    def refresh_access_token(
        self, *, app_id: str, secret_key: SecretStr, refresh_token: SecretStr
    ) -> AccessTokenPair:
        """Trade a refresh token for a new pair. The old refresh token is dead once Zalo answers."""
        response = self._send(
            "POST",
            self._oauth_base_url + REFRESH,
            REFRESH,
            headers={"secret_key": secret_key.get_secret_value()},
            data={
                "refresh_token": refresh_token.get_secret_value(),
                "app_id": app_id,
                "grant_type": "refresh_token",
            },
        )
        body = _oauth_body(response)
        return _parse(AccessTokenPair, body, REFRESH)

    # -- the funnel ------------------------------------------------------------------------------

    def _api(
        self,
        method: str,
        path: str,
        access_token: SecretStr,
        *,
        json: Json | None = None,
        params: Mapping[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Json:
        headers = {"access_token": access_token.get_secret_value(), **(extra_headers or {})}
        return self._request(
            method, self._api_base_url + path, path, headers=headers, json=json, params=params
        )

    def _request(
        self,
        method: str,
        url: str,
        endpoint: str,
        *,
        headers: Mapping[str, str],
        json: Json | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Json:
        """Send, then raise the typed error for any failure; return the JSON body on success."""
        response = self._send(method, url, endpoint, headers=headers, json=json, params=params)
        _raise_for_http_status(response, endpoint)
        body = _json_object(response, endpoint)
        code = _error_code(body, endpoint)
        if code != 0:
            raise api_error(code, str(body.get("message", "")), endpoint=endpoint)
        return body

    def _send(
        self,
        method: str,
        url: str,
        endpoint: str,
        *,
        headers: Mapping[str, str],
        json: Json | None = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The one place httpx exceptions become ours."""
        request = httpx.Request(
            method,
            url,
            headers={**DEFAULT_HEADERS, **headers},
            json=json,
            params=params,
            data=data,
            extensions=self._timeout,
        )
        try:
            return _complete(self._transport.handle_request(request))
        except httpx.ConnectTimeout as exc:
            raise ZaloConnectError(f"connect timeout on {endpoint}", endpoint=endpoint) from exc
        except httpx.TimeoutException as exc:
            raise ZaloTimeout(f"{type(exc).__name__} on {endpoint}", endpoint=endpoint) from exc
        except httpx.ConnectError as exc:
            raise ZaloConnectError(f"cannot connect for {endpoint}", endpoint=endpoint) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise ZaloDisconnected(
                f"server disconnected on {endpoint}: {type(exc).__name__}", endpoint=endpoint
            ) from exc
        except httpx.TransportError as exc:
            raise ZaloTransportError(
                f"transport error on {endpoint}: {type(exc).__name__}", endpoint=endpoint
            ) from exc


def _complete(response: httpx.Response) -> httpx.Response:
    """Read the whole body and give the connection back to the pool."""
    try:
        response.read()
    finally:
        response.close()
    return response


def _raise_for_http_status(response: httpx.Response, endpoint: str) -> None:
    status = response.status_code
    if status == HTTP_TOO_MANY_REQUESTS:
        raise ZaloRateLimited(
            f"HTTP 429 on {endpoint}",
            endpoint=endpoint,
            retry_after_s=_retry_after_s(response),
        )
    if status >= HTTP_SERVER_ERROR:
        raise ZaloServerError(f"HTTP {status} on {endpoint}", endpoint=endpoint, status_code=status)
    if not response.is_success and not _looks_like_zalo_error(response):
        raise ZaloHTTPError(f"HTTP {status} on {endpoint}", endpoint=endpoint, status_code=status)


def _looks_like_zalo_error(response: httpx.Response) -> bool:
    """A 4xx that still carries Zalo's JSON `error` is classified by its code, not its status."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "error" in body


def _retry_after_s(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", DEFAULT_RETRY_AFTER_S)))
    except ValueError:
        return DEFAULT_RETRY_AFTER_S


def _json_object(response: httpx.Response, endpoint: str) -> Json:
    try:
        body = response.json()
    except ValueError:
        excerpt = response.text[:BODY_EXCERPT_CHARS].replace("\n", " ")
        raise ZaloBadResponse(
            f"non-JSON body on {endpoint} (HTTP {response.status_code}): {excerpt!r}",
            endpoint=endpoint,
        ) from None
    if not isinstance(body, dict):
        raise ZaloBadResponse(f"JSON body on {endpoint} is not an object", endpoint=endpoint)
    return body


def _error_code(body: Json, endpoint: str) -> int:
    raw = body.get("error")
    if raw is None or isinstance(raw, bool):
        raise ZaloBadResponse(f"JSON without `error` on {endpoint}", endpoint=endpoint)
    try:
        code = int(raw)
        if isinstance(raw, float) and code != raw:
            raise ValueError(raw)  # 0.5 is not 0: not a code Zalo sends
        return code
    except (TypeError, ValueError, OverflowError):
        raise ZaloBadResponse(
            f"`error` on {endpoint} is not a number: {str(raw)[:20]!r}", endpoint=endpoint
        ) from None


def _data(body: Json, endpoint: str) -> Json:
    data = body.get("data")
    if not isinstance(data, dict):
        raise ZaloBadResponse(f"success on {endpoint} without a `data` object", endpoint=endpoint)
    return data


def _accepted_send(body: Json) -> SendResult:
    """`error: 0` on a send means Zalo accepted the message, whatever the rest looks like: a
    `data` that is missing or of the wrong shape is logged and read as far as it goes, never
    turned into an error (an error would send the message again)."""
    data = body.get("data")
    result = SendResult.model_validate(data if isinstance(data, dict) else {})
    odd = result.oddities() if isinstance(data, dict) else ["no `data` object"]
    if odd:
        log.warning("Zalo accepted a send with an unexpected answer: %s", "; ".join(odd))
    return result


def _oauth_body(response: httpx.Response) -> Json:
    """OAuth answers in its own shape; anything without `access_token` is a failure."""
    if response.status_code == HTTP_TOO_MANY_REQUESTS or response.status_code >= HTTP_SERVER_ERROR:
        _raise_for_http_status(response, REFRESH)
    body = _json_object(response, REFRESH)
    if body.get("access_token"):
        return body
    raise ZaloOAuthError(
        _oauth_message(body, response.status_code),
        endpoint=REFRESH,
        code=_optional_int(body.get("error")),
        error_name=str(body.get("error_name", "")),
    )


def _oauth_message(body: Json, status: int) -> str:
    name = body.get("error_name") or "no access_token in response"
    description = body.get("error_description") or body.get("error_reason") or ""
    detail = f": {description}" if description else ""
    return f"OAuth refresh refused (HTTP {status}, {name}){detail}"


def _optional_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError, OverflowError):
        return None


def _parse(model: type[Model], body: Json, endpoint: str) -> Model:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) for err in exc.errors())
        raise ZaloBadResponse(
            f"unexpected response shape on {endpoint}: bad {fields}", endpoint=endpoint
        ) from None


__all__ = ["ZaloClient", "ZaloError", "timeout_from"]
