"""The journey-step job: the public kwargs contract of `zns.send_journey_step`, validated.

Producers and the worker validate with the same model, so a job the producer accepts is a job the
worker can send, and a bad job fails in the billing app before it reaches the queue.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from worker.errors import InvalidJob
from worker.phone import mask_phone, normalize_phone
from worker.settings import ACCOUNT_NAME, DEFAULT_ACCOUNT, TokenType

MAX_TRACKING_ID = 48  # Zalo's limit
TRACKING_ID = re.compile(r"^[A-Za-z0-9_-]{1,48}$")  # "no special characters"
TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TEMPLATE_PARAMS = 50
MAX_PARAM_NAME = 64
MAX_PARAM_VALUE = 1000  # Zalo's per-parameter limits are lower; this only bounds garbage
MAX_KEY = 200
PARAM_VALUE_RULE = "must be a string, an integer or a finite number"
MAX_STEP = 10_000  # a journey has a handful of steps; this only bounds garbage
#: The public kwargs; anything else (but our own `_meta`) is refused rather than silently dropped.
PUBLIC_FIELDS = frozenset(
    {
        "phone",
        "template_id",
        "template_data",
        "journey",
        "token_type",
        "idempotency_key",
        "tracking_id",
        "account",
        "step",
        "lane",
    }
)


class Lane(StrEnum):
    """How urgent a step is within its account: a realtime step overtakes the account's bulk
    backlog (both count against the account's one rate limit and quota)."""

    REALTIME = "realtime"  # a parcel out for delivery now; the default for a single step
    BULK = "bulk"  # a billing run's 500k notices, drained at the account's rate


FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]  # JSON has no inf/nan
ParamValue = StrictStr | StrictInt | FiniteFloat


class Job(BaseModel):
    """One journey step, normalised: phone in `84…` form, template id as a string."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phone: str
    template_id: str
    template_data: dict[Annotated[str, Field(min_length=1, max_length=MAX_PARAM_NAME)], ParamValue]
    journey: str = Field(min_length=1, max_length=MAX_KEY)
    token_type: TokenType | None = None
    idempotency_key: str = Field(min_length=1, max_length=MAX_KEY)
    tracking_id: str
    account: str = Field(default=DEFAULT_ACCOUNT, pattern=rf"\A{ACCOUNT_NAME.pattern}\z")
    #: Position in its journey: sent after the journey's lower steps (worker/state/ordering.py).
    step: StrictInt | None = Field(default=None, ge=1, le=MAX_STEP)
    #: None (not sent) reads as realtime: bare `send_task` producers keep their kwargs as they are.
    lane: Lane | None = None

    @property
    def priority(self) -> Lane:
        """The step's lane (realtime unless it says bulk)."""
        return self.lane or Lane.REALTIME

    @field_validator("template_data")
    @classmethod
    def _bounded_data(cls, value: dict[str, ParamValue]) -> dict[str, ParamValue]:
        if not value:
            raise ValueError("template_data must not be empty")
        if len(value) > MAX_TEMPLATE_PARAMS:
            raise ValueError(f"template_data has more than {MAX_TEMPLATE_PARAMS} parameters")
        for name, item in value.items():
            if isinstance(item, str) and len(item) > MAX_PARAM_VALUE:
                raise ValueError(f"template_data[{name!r}] is longer than {MAX_PARAM_VALUE}")
        return value

    @field_validator("tracking_id")
    @classmethod
    def _tracking(cls, value: str) -> str:
        if not TRACKING_ID.match(value):
            raise ValueError(
                f"tracking_id must be 1-{MAX_TRACKING_ID} letters, digits, '_' or '-' "
                f"(Zalo's limit: {MAX_TRACKING_ID} characters, no special characters)"
            )
        return value

    def kwargs(self) -> dict[str, Any]:
        """The public task kwargs for this job (what a producer enqueues)."""
        return self.model_dump(mode="json", exclude_none=True)

    def kwargs_repr(self) -> str:
        """What Celery logs and Flower show instead of the kwargs: the phone masked."""
        return masked_kwargs_repr(self.kwargs())


def masked_kwargs_repr(kwargs: dict[str, Any]) -> str:
    """repr of task kwargs for logs, events and Flower: the phone (and a journey equal to it)
    masked, template values (names, amounts, addresses) hidden behind their keys, `_meta` out;
    a batch's steps (`zns.send_journey_steps`) shown by their task ids only."""
    phone = kwargs.get("phone")
    shown = {k: v for k, v in kwargs.items() if k != "_meta"}
    steps = shown.get("steps")
    if isinstance(steps, list):
        shown["steps"] = [s.get("id") if isinstance(s, dict) else "?" for s in steps]
    data = shown.get("template_data")
    if isinstance(data, dict):
        shown["template_data"] = dict.fromkeys(data, "…")
    if isinstance(phone, str):
        shown["phone"] = mask_phone(phone)
        if shown.get("journey") == phone:
            shown["journey"] = shown["phone"]
    return repr(shown)


def derive_tracking_id(idempotency_key: str) -> str:
    """A deterministic tracking id: the same job always carries the same one."""
    data = idempotency_key.encode("utf-8", "surrogatepass")  # total: parse_job refuses those
    return "zns-" + hashlib.blake2b(data, digest_size=16).hexdigest()


def parse_job(raw: object, *, default_key: str) -> Job:
    """Validate raw task kwargs into a Job, or raise InvalidJob with every reason (phone masked)."""
    if not isinstance(raw, dict):
        raise InvalidJob(f"job kwargs must be an object, got {type(raw).__name__}")
    unknown = _unknown_fields(raw)
    if unknown:
        raise InvalidJob(unknown)
    if not _utf8(raw):
        raise InvalidJob(_not_utf8(raw))
    phone = normalize_phone(raw.get("phone"))
    fields = dict(raw)
    fields["phone"] = phone
    fields["template_id"] = _template_id(raw.get("template_id"))
    fields.setdefault("journey", phone)
    key = fields.get("idempotency_key") or default_key
    if not _utf8(key):
        raise InvalidJob("the task id (the default idempotency_key) is not valid UTF-8 text")
    fields["idempotency_key"] = key
    if fields.get("tracking_id") is None and isinstance(key, str):
        fields["tracking_id"] = derive_tracking_id(key)
    if fields.get("account") is None:
        fields["account"] = DEFAULT_ACCOUNT
    try:
        return Job.model_validate(fields)
    except ValidationError as exc:
        raise InvalidJob(f"invalid job: {_reasons(exc)}") from None


def _utf8(value: object) -> bool:
    """Whether every string inside `value` can be sent as UTF-8 JSON (no lone surrogates).

    One C-speed encode in the common case; the walk only for what JSON cannot encode."""
    try:
        json.dumps(value, ensure_ascii=False, default=repr).encode("utf-8")
    except UnicodeEncodeError:
        return False
    except (TypeError, ValueError, RecursionError):
        return _utf8_walk(value)
    return True


def _not_utf8(raw: dict[Any, Any]) -> str:
    """Which fields hold text that is not UTF-8 (names escaped: they may be the culprits)."""
    where = [ascii(key) for key, value in raw.items() if not _utf8_walk(key) or not _utf8(value)]
    return (
        f"{', '.join(where)}: text that is not valid UTF-8 (a lone surrogate, e.g. an emoji "
        "cut in half): Zalo takes UTF-8 JSON only"
    )


def _utf8_walk(value: object) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_utf8_walk(k) and _utf8_walk(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_utf8_walk(item) for item in value)
    return True


def _template_id(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidJob("template_id is required (a string or an integer)")
    text = str(value).strip()
    if not TEMPLATE_ID.match(text):
        raise InvalidJob("template_id must be 1-64 letters, digits, '_' or '-'")
    return text


def _reasons(exc: ValidationError) -> str:
    """Field paths and messages, never the offending values (they may hold personal data)."""
    parts: dict[str, str] = {}
    for err in exc.errors():
        loc = err["loc"]
        if loc[:1] == ("template_data",) and len(loc) > 2:  # noqa: PLR2004 - a value's union
            parts[f"template_data.{loc[1]}"] = PARAM_VALUE_RULE
            continue
        parts[".".join(str(p) for p in loc) or "job"] = err["msg"]
    return "; ".join(f"{where}: {msg}" for where, msg in parts.items())


def _unknown_fields(raw: dict[Any, Any]) -> str | None:
    """Which fields are not part of the contract, with the field each typo probably meant."""
    unknown = [k for k in raw if k not in PUBLIC_FIELDS]
    if not unknown:
        return None
    named = []
    for key in sorted(unknown, key=repr):
        close = difflib.get_close_matches(str(key), PUBLIC_FIELDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        named.append(f"{repr(key)[:40]}{hint}")
    return f"unknown job fields: {', '.join(named)}; accepted: {', '.join(sorted(PUBLIC_FIELDS))}"
