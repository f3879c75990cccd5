"""The envelope check in front of Celery's strategy, on kombu messages as the consumer gets them
(the same cases against a real worker: tests/chaos/test_regressions.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kombu.message import Message

from tasks.envelope import envelope_problem

KWARGS = {"phone": "0987654321", "template_id": "1", "template_data": {"a": "b"}}
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
HEADERS = {"lang": "py", "task": "zns.send_journey_step", "id": "t-1"}


def message(
    body: Any, headers: dict[str, Any] | None = None, content_type: str = "application/json"
) -> Message:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Message(
        body=raw,  # type: ignore[arg-type]  # kombu takes bytes too; the stub says str
        content_type=content_type,
        content_encoding="utf-8",
        headers=HEADERS if headers is None else headers,
    )


def test_what_celery_sends_is_sound() -> None:
    assert envelope_problem(message([[], KWARGS, EMBED])) is None
    assert (
        envelope_problem(message([[], KWARGS, None], {**HEADERS, "timelimit": [60, None]})) is None
    )
    assert envelope_problem(message({"task": "x", "id": "1", "args": [], "kwargs": {}}, {})) is None


def test_a_message_without_a_task_is_left_to_celery() -> None:
    assert envelope_problem(message({"no": "task"}, {})) is None


@pytest.mark.parametrize(
    ("body", "headers", "content_type", "expected"),
    [
        (b"\x00\xff", HEADERS, "application/data", "content type"),
        ([[], KWARGS, EMBED], {**HEADERS, "task": ["zns"]}, "application/json", "`task`"),
        ([[], KWARGS, EMBED], {**HEADERS, "id": None}, "application/json", "`id`"),
        ([[], KWARGS, EMBED], {**HEADERS, "timelimit": [1, 2, 3]}, "application/json", "[soft"),
        ([[], KWARGS, EMBED], {**HEADERS, "timelimit": ["a", 2]}, "application/json", "numbers"),
        ({"m": 1}, HEADERS, "application/json", "[args, kwargs, embed]"),
        ([[], KWARGS], HEADERS, "application/json", "[args, kwargs, embed]"),
        ([5, KWARGS, EMBED], HEADERS, "application/json", "args"),
        ([[], [1, 2], EMBED], HEADERS, "application/json", "kwargs"),
        ([[], KWARGS, "x"], HEADERS, "application/json", "embed is not"),
        ([[], KWARGS, {**EMBED, "chain": "x"}], HEADERS, "application/json", "`chain`"),
        ([[], KWARGS, {**EMBED, "chord": [1]}], HEADERS, "application/json", "`chord`"),
        ({"task": "zns.unknown"}, {}, "application/json", "`id`"),
        ({"task": 5, "id": "1"}, {}, "application/json", "`task`"),
        ({"task": "t", "id": "1", "kwargs": [1]}, {}, "application/json", "kwargs"),
    ],
)
def test_a_malformed_envelope_is_named(
    body: Any, headers: dict[str, Any], content_type: str, expected: str
) -> None:
    problem = envelope_problem(message(body, headers, content_type))
    assert problem is not None and expected in problem
