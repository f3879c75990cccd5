"""Check a task message's envelope before Celery's strategy sees it.

Celery trusts the shape of what it consumes: a task name that is a list, a `timelimit` of three
values, a body that is bytes or whose parts have the wrong types, or a protocol-1 message
without an id make it raise inside its consumer (the worker dies or restarts in a loop), hang the
job unacked, or fail it outside our task (no dead letter). Anything a foreign producer could
publish that Celery's own `send_task` never would is caught here and becomes a dead letter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from worker.messaging.broker_message import REASON_HEADER, UNREADABLE

JSON = "application/json"
EMBED_LISTS = ("callbacks", "errbacks", "chain")
BODY_PARTS = 3  # [args, kwargs, embed]
TIME_LIMITS = 2  # [soft, hard]
MAX_ID = 255  # a uuid is 36; Celery's result key holds the id
LINK_IDS = ("root_id", "parent_id", "group")


def envelope_problem(message: Any) -> str | None:
    """Why this message cannot be run as a task, or None when its envelope is sound.

    The body is decoded once here; kombu caches it, so the request reuses it."""
    headers = message.headers
    if not isinstance(headers, Mapping):
        return None  # not a task message at all: Celery's `on_unknown_message` handles it
    if message.content_type == UNREADABLE:
        return f"unreadable broker message: {headers.get(REASON_HEADER)}"
    if message.content_type != JSON:
        return f"content type {str(message.content_type)[:60]!r}: only {JSON} is accepted"
    if "task" in headers:
        return _v2_problem(headers, message.decode)
    return _v1_problem(message.decode)


def _v2_problem(headers: Mapping[str, Any], decode: Callable[[], Any]) -> str | None:
    if not isinstance(headers["task"], str) or not _utf8(headers["task"]):
        return "header `task` is not a string of valid UTF-8 text"
    problem = _id_problem(headers.get("id"), "header `id`") or _ids_problem(headers)
    problem = problem or _timelimit_problem(headers.get("timelimit"))
    if problem:
        return problem
    body = decode()
    if not isinstance(body, list | tuple) or len(body) != BODY_PARTS:
        return "body is not [args, kwargs, embed]"
    return _parts_problem(*body)


def _v1_problem(decode: Callable[[], Any]) -> str | None:
    body = decode()
    if not isinstance(body, Mapping) or "task" not in body:
        return None  # not a task message: Celery's `on_unknown_message` handles it
    if not isinstance(body["task"], str) or not _utf8(body["task"]):
        return "`task` is not a string of valid UTF-8 text"
    problem = _id_problem(body.get("id"), "`id`") or _ids_problem(body)
    if problem:
        return problem
    return _parts_problem(body.get("args", []), body.get("kwargs", {}), {})


def _id_problem(value: Any, name: str) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{name} is missing or not a string"
    if not _utf8(value):
        return f"{name} is not valid UTF-8 text (a lone surrogate): results cannot be stored"
    if len(value) > MAX_ID:
        return f"{name} is longer than {MAX_ID} characters"
    return None


def step_id_problem(value: Any) -> str | None:
    """Why a batch step's id cannot be a task id, or None."""
    return _id_problem(value, "`id`")


def _ids_problem(fields: Mapping[str, Any]) -> str | None:
    """The other ids Celery keys results and events by: strings of UTF-8 text, or absent."""
    for name in LINK_IDS:
        value = fields.get(name)
        if value is not None and (not isinstance(value, str) or not _utf8(value)):
            return f"`{name}` is not a string of valid UTF-8 text"
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _timelimit_problem(timelimit: Any) -> str | None:
    if timelimit is None:
        return None
    if not isinstance(timelimit, list | tuple) or len(timelimit) != TIME_LIMITS:
        return "header `timelimit` is not [soft, hard]"
    if not all(v is None or _is_number(v) for v in timelimit):
        return "header `timelimit` holds something other than numbers"
    return None


def _parts_problem(args: Any, kwargs: Any, embed: Any) -> str | None:
    if not isinstance(args, list | tuple):
        return "args is not a list"
    if not isinstance(kwargs, Mapping):
        return "kwargs is not an object"
    return _embed_problem(embed)


def _embed_problem(embed: Any) -> str | None:
    if embed is None:
        return None
    if not isinstance(embed, Mapping):
        return "embed is not an object"
    for key in EMBED_LISTS:
        if not isinstance(embed.get(key), list | tuple | None):
            return f"embed `{key}` is not a list"
    if not isinstance(embed.get("chord"), Mapping | None):
        return "embed `chord` is not an object"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
