"""Zalo error code -> class/action: the one table, loaded from `error-codes.csv` beside this file.

A code marked third-party in the CSV may turn out wrong; correcting it is a one-line CSV edit.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

from worker.errors import (
    AccessTokenError,
    AccountError,
    Action,
    DailyQuotaError,
    ErrorClass,
    JourneyTokenError,
    NightHoursError,
    RecipientError,
    RequestError,
    TemplateError,
    TemplateQuotaError,
    TransientApiError,
    UnknownApiError,
    ZaloApiError,
)

CSV_NAME = "error-codes.csv"

#: The exception type raised for each class of the table.
EXCEPTION_BY_CLASS: dict[ErrorClass, type[ZaloApiError]] = {
    ErrorClass.TRANSIENT: TransientApiError,
    ErrorClass.ACCOUNT: AccountError,
    ErrorClass.REQUEST: RequestError,
    ErrorClass.RECIPIENT: RecipientError,
    ErrorClass.TEMPLATE: TemplateError,
    ErrorClass.ACCESS_TOKEN: AccessTokenError,
    ErrorClass.JOURNEY_TOKEN: JourneyTokenError,
    ErrorClass.QUOTA_DAILY: DailyQuotaError,
    ErrorClass.QUOTA_TEMPLATE: TemplateQuotaError,
    ErrorClass.NIGHT_HOURS: NightHoursError,
}


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """One row of the error-code table."""

    code: int
    error_class: ErrorClass
    action: Action
    meaning: str
    confidence: str


@cache
def code_table() -> dict[int, CodeInfo]:
    """Every known Zalo code, read once from the packaged CSV."""
    text = resources.files("worker.zalo").joinpath(CSV_NAME).read_text(encoding="utf-8")
    rows = csv.DictReader(text.splitlines())
    return {
        int(row["code"]): CodeInfo(
            code=int(row["code"]),
            error_class=ErrorClass(row["class"]),
            action=Action(row["action"]),
            meaning=row["meaning"],
            confidence=row["confidence"],
        )
        for row in rows
    }


def lookup(code: int) -> CodeInfo | None:
    """The table's row for `code`, or None when Zalo sent a code we do not know."""
    return code_table().get(code)


def api_error(code: int, zalo_message: str, *, endpoint: str) -> ZaloApiError:
    """The typed exception for a non-zero Zalo `error` code."""
    info = lookup(code)
    if info is None:
        exc_type: type[ZaloApiError] = UnknownApiError
        meaning = "unknown Zalo error code"
    else:
        exc_type = EXCEPTION_BY_CLASS.get(info.error_class, UnknownApiError)
        meaning = info.meaning
    detail = f" ({zalo_message})" if zalo_message else ""
    return exc_type(
        f"Zalo error {code} on {endpoint}: {meaning}{detail}", endpoint=endpoint, code=code
    )
