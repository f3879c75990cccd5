"""Logging: JSON lines in production, readable text locally; task id and account on every line,
phone numbers masked, tokens never logged (they never reach a log call in the first place).
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

from worker.phone import mask_phone

LogFormat = Literal["json", "text", "auto"]
#: The account of the step this thread is working on (set by the task).
current_account: ContextVar[str | None] = ContextVar("zns_account", default=None)
#: Vietnamese mobile numbers as they may appear in free text (84… or 0…), standing alone: not a
#: run of digits inside a word or a hex id (a task id such as `…e0407123205c` holds a ten-digit
#: run that masking would corrupt).
PHONE_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])(?:84|0)\d{9}(?![0-9A-Za-z])")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(task_id)s %(account)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(task_id)s %(task_name)s %(account)s"


def mask_phones(text: str) -> str:
    """Mask every phone number found in `text`."""
    return PHONE_IN_TEXT.sub(lambda match: mask_phone(match.group(0)), text)


class ContextFilter(logging.Filter):
    """Adds task_id, task_name and account to every record, and masks phone numbers."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Enrich and sanitise; never drops a record."""
        task = _current_task()
        request = getattr(task, "request", None)
        data = getattr(record, "data", None)  # Celery's own task lines carry the task here
        data = data if isinstance(data, dict) else {}
        record.task_id = getattr(request, "id", None) or data.get("id")
        record.task_name = (getattr(task, "name", None) if task else None) or data.get("name")
        record.account = current_account.get() or _account_in(data)
        record.msg = mask_phones(record.getMessage())
        record.args = None
        for name, value in vars(record).items():
            if name not in STANDARD_ATTRIBUTES:
                setattr(record, name, _masked(value))
        return True


STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
ACCOUNT_IN_REPR = re.compile(r"'account': '([A-Za-z0-9_.-]{1,64})'")


def _account_in(data: dict[str, object]) -> str | None:
    match = ACCOUNT_IN_REPR.search(str(data.get("kwargs", "")))
    return match.group(1) if match else ("default" if data.get("kwargs") else None)


def _masked(value: object) -> object:
    """Phone numbers masked inside strings, dicts and lists (Celery puts job kwargs in `data`)."""
    if isinstance(value, str):
        return mask_phones(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value


#: Celery's per-task INFO lines ("Task … received", "Task … succeeded in …").
CELERY_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")


def configure_logging(
    *, fmt: LogFormat = "auto", level: str | int = "INFO", task_lines: bool = False
) -> None:
    """Install one handler on the root logger (stderr) with our format and filter.

    `task_lines`: keep Celery's two INFO lines per task. Off by default: at 500k jobs they are
    a million lines that say what the metrics and Flower already say, and formatting them (JSON,
    phone masking) was ~10 % of the worker's CPU per message, half of it on the single consumer
    thread. Failures, retries of ours and warnings are logged either way."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if use_json:
        handler.setFormatter(
            JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level"})
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # One INFO line per HTTP call (httpx's default) would drown the task lines at 500k jobs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    for name in CELERY_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if task_lines else logging.WARNING)


def _current_task() -> object | None:
    try:
        from celery import current_task  # noqa: PLC0415 (worker/ stays usable without a task)
    except ImportError:  # pragma: no cover
        return None
    return current_task if current_task and getattr(current_task, "request", None) else None
