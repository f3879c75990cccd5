"""The project's exception tree: one root, transient vs permanent as a property of the type.

    ZnsError
    ├── ConfigError                      bad or missing setting; names the variable
    ├── InvalidJob                       a job that can never be sent (dead letter, never retried)
    │   └── InvalidPhone
    └── ZaloError                        anything Zalo (or the way to Zalo) said no to
        ├── ZaloTransportError           transient: the request may not have reached Zalo
        │   ├── ZaloConnectError         refused / DNS / connect timeout: surely not sent
        │   ├── ZaloTimeout              read/write/pool timeout: outcome unknown
        │   └── ZaloDisconnected         server closed the connection: outcome unknown
        ├── ZaloHTTPError                non-2xx status
        │   ├── ZaloRateLimited          HTTP 429: slow down, retry
        │   └── ZaloServerError          HTTP 5xx: retry
        ├── ZaloBadResponse              non-JSON body or JSON without `error`: outcome unknown
        ├── ZaloOAuthError               the OAuth host refused a refresh (no access_token)
        └── ZaloApiError                 JSON `error` != 0; subclass chosen by the code table
            ├── TransientApiError        -100 …: retry with backoff
            ├── AccessTokenError         -124/-216/-220: refresh once, retry
            ├── JourneyTokenError        -148/-149/-150: new token, retry once
            ├── DailyQuotaError          -144/-126/-1441: park until reset
            ├── TemplateQuotaError       -147: park this template until reset
            ├── NightHoursError          -133: park until 06:00
            ├── AccountError             -115, -101 …: pause the account
            ├── RecipientError           -108, -118 …: dead letter
            ├── TemplateError            -109, -1491 …: dead letter
            ├── RequestError             -106, -121 …: dead letter (a bug on our side)
            └── UnknownApiError          a code not in the table: a few retries, then dead letter

`error_class` and `action` on each type mirror the columns of `worker/zalo/error-codes.csv`.
No message ever contains a token: only the endpoint, the code and Zalo's own message.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorClass(StrEnum):
    """Why an attempt did not send: the `class` column of the error-code table, the classes of
    failures without a code, and the waits (`WAITS`), which are not failures."""

    SUCCESS = "success"
    TRANSIENT = "transient"
    ACCOUNT = "account"
    REQUEST = "request"
    RECIPIENT = "recipient"
    TEMPLATE = "template"
    ACCESS_TOKEN = "access_token"
    JOURNEY_TOKEN = "journey_token"
    QUOTA_DAILY = "quota_daily"
    QUOTA_TEMPLATE = "quota_template"
    NIGHT_HOURS = "night_hours"
    RATE_LIMITED = "rate_limited"
    OAUTH = "oauth"
    UNKNOWN = "unknown"
    INVALID_JOB = "invalid_job"  # the kwargs break the contract: dead letter, never retried
    MALFORMED_MESSAGE = "malformed_message"  # not a task message Celery can run
    BUSY = "busy"  # another execution holds the step's claim
    THROTTLED = "throttled"  # no global rate-limit slot within the wait
    TOKEN_WAIT = "token_wait"  # another step is creating the journey token


#: Retry classes that are waits, not failures: they do not count towards the retry budget.
WAITS = frozenset({ErrorClass.BUSY, ErrorClass.THROTTLED, ErrorClass.TOKEN_WAIT})


class Action(StrEnum):
    """The `action` column of the error-code table, plus actions for non-code failures."""

    RECORD = "record"
    RETRY_BACKOFF = "retry_backoff"
    PAUSE_ACCOUNT = "pause_account"
    DEAD_LETTER = "dead_letter"
    REFRESH_AND_RETRY_ONCE = "refresh_and_retry_once"
    NEW_TOKEN_AND_RETRY_ONCE = "new_token_and_retry_once"
    PARK_UNTIL_RESET = "park_until_reset"
    PARK_TEMPLATE_UNTIL_RESET = "park_template_until_reset"
    PARK_UNTIL_MORNING = "park_until_morning"
    SLOW_DOWN_AND_RETRY = "slow_down_and_retry"
    RETRY_THEN_DEAD_LETTER = "retry_then_dead_letter"


class ZnsError(Exception):
    """Root of every error this project raises."""


class ConfigError(ZnsError):
    """A setting is missing or invalid; the message names the environment variable."""


class InvalidJob(ZnsError):
    """A job that can never be sent as it is: dead-letter it, never retry it."""


class InvalidPhone(InvalidJob):
    """A phone number that is not a valid Vietnamese mobile number."""


class ZaloError(ZnsError):
    """Zalo, or the network path to it, did not accept a call."""

    error_class: ErrorClass = ErrorClass.UNKNOWN
    action: Action = Action.RETRY_THEN_DEAD_LETTER
    transient: bool = False
    #: True when Zalo may have acted on the request even though we saw a failure.
    outcome_unknown: bool = False

    def __init__(self, message: str, *, endpoint: str = "", code: int | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, endpoint={self.endpoint!r})"


class ZaloTransportError(ZaloError):
    """The request failed on the network; retry with backoff."""

    error_class = ErrorClass.TRANSIENT
    action = Action.RETRY_BACKOFF
    transient = True


class ZaloConnectError(ZaloTransportError):
    """No connection was made, so nothing was sent."""


class ZaloTimeout(ZaloTransportError):
    """The call timed out after the request may have been sent."""

    outcome_unknown = True


class ZaloDisconnected(ZaloTransportError):
    """The server closed the connection without a full response."""

    outcome_unknown = True


class ZaloHTTPError(ZaloError):
    """A non-2xx HTTP status that carried no Zalo error code."""

    def __init__(self, message: str, *, endpoint: str = "", status_code: int = 0) -> None:
        super().__init__(message, endpoint=endpoint)
        self.status_code = status_code


class ZaloRateLimited(ZaloHTTPError):
    """HTTP 429: every sender should slow down, then retry."""

    error_class = ErrorClass.RATE_LIMITED
    action = Action.SLOW_DOWN_AND_RETRY
    transient = True

    def __init__(
        self, message: str, *, endpoint: str = "", status_code: int = 429, retry_after_s: float
    ) -> None:
        super().__init__(message, endpoint=endpoint, status_code=status_code)
        self.retry_after_s = retry_after_s


class ZaloServerError(ZaloHTTPError):
    """HTTP 5xx from Zalo or a proxy in front of it."""

    error_class = ErrorClass.TRANSIENT
    action = Action.RETRY_BACKOFF
    transient = True
    outcome_unknown = True


class ZaloBadResponse(ZaloError):
    """The body was not JSON, or JSON without an `error` field."""

    outcome_unknown = True


class ZaloOAuthError(ZaloError):
    """The OAuth host answered without an access token (whatever the HTTP status)."""

    error_class = ErrorClass.OAUTH
    action = Action.PAUSE_ACCOUNT

    def __init__(
        self, message: str, *, endpoint: str = "", code: int | None = None, error_name: str = ""
    ) -> None:
        super().__init__(message, endpoint=endpoint, code=code)
        self.error_name = error_name


class ZaloApiError(ZaloError):
    """Zalo answered with a non-zero JSON `error` code."""

    code: int


class TransientApiError(ZaloApiError):
    """Zalo asks to try again later."""

    error_class = ErrorClass.TRANSIENT
    action = Action.RETRY_BACKOFF
    transient = True


class AccessTokenError(ZaloApiError):
    """The OA access token is invalid or expired."""

    error_class = ErrorClass.ACCESS_TOKEN
    action = Action.REFRESH_AND_RETRY_ONCE


class JourneyTokenError(ZaloApiError):
    """The journey token is missing, invalid or expired."""

    error_class = ErrorClass.JOURNEY_TOKEN
    action = Action.NEW_TOKEN_AND_RETRY_ONCE


class DailyQuotaError(ZaloApiError):
    """The OA's daily (or development, or monthly promotion) quota is used up."""

    error_class = ErrorClass.QUOTA_DAILY
    action = Action.PARK_UNTIL_RESET


class TemplateQuotaError(ZaloApiError):
    """This template's daily limit is reached."""

    error_class = ErrorClass.QUOTA_TEMPLATE
    action = Action.PARK_TEMPLATE_UNTIL_RESET


class NightHoursError(ZaloApiError):
    """No sending between 22:00 and 06:00 Vietnam time."""

    error_class = ErrorClass.NIGHT_HOURS
    action = Action.PARK_UNTIL_MORNING


class AccountError(ZaloApiError):
    """The OA or app needs a human (permissions, balance, blocked)."""

    error_class = ErrorClass.ACCOUNT
    action = Action.PAUSE_ACCOUNT


class RecipientError(ZaloApiError):
    """This recipient cannot receive the message."""

    error_class = ErrorClass.RECIPIENT
    action = Action.DEAD_LETTER


class TemplateError(ZaloApiError):
    """The template or its data is wrong."""

    error_class = ErrorClass.TEMPLATE
    action = Action.DEAD_LETTER


class RequestError(ZaloApiError):
    """The request itself is malformed: a bug on our side."""

    error_class = ErrorClass.REQUEST
    action = Action.DEAD_LETTER


class UnknownApiError(ZaloApiError):
    """A code the table does not know: retry a few times, then dead-letter with the raw code."""

    error_class = ErrorClass.UNKNOWN
    action = Action.RETRY_THEN_DEAD_LETTER
