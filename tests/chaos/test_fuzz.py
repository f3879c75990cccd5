"""Scenario 7: fuzz (hypothesis). Whatever comes in, never a crash or a stuck job: always a clear
error or a dead letter.

- producer API inputs: `Producer.validate` accepts a job or raises InvalidJob, nothing else; an
  accepted job is one the worker accepts too, and one that can travel as JSON to Zalo;
- garbage API responses (httpx.MockTransport), valid JSON of the wrong shape on every endpoint
  included: every ZaloClient call returns or raises a ZaloError, nothing else, no error message
  carries a token, and a send Zalo accepted (`error: 0`) is never an error (it would be resent);
- raw task messages written to the broker's list as a foreign producer could write them
  (protocols 1 and 2; wrong types, missing fields, huge values, garbage JSON, wrong headers, a
  broken kombu envelope; unicode edge cases in every field, headers and body: lone surrogates,
  NUL, bidi marks, 4-byte characters, invalid escapes and bytes that are not UTF-8; unknown
  kwargs; a forged `_meta`) to a real worker: each ends as a send or a dead letter, the queue
  drains, the worker lives on; the edge cases that found bugs also run one by one;
- a forged probe (`_meta`) for a paused account is parked, not sent, and the account stays paused.

Every fuzz here is derandomized (the same examples in every run) and bounded.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from kombu import Connection, Exchange, Queue
from kombu import Producer as KombuProducer
from pydantic import SecretStr

from tests.chaos.harness import QUEUE_LISTS, UNACKED, UNACKED_INDEX, Chaos
from tests.chaos.report import Row
from tests.support import WorkerProcess
from worker.errors import InvalidJob, ZaloError
from worker.job import derive_tracking_id, parse_job
from worker.messaging.names import QUEUE, TASK_NAME
from worker.producer import Producer
from worker.settings import DEFAULT_ACCOUNT
from worker.state.locks import Lock
from worker.zalo.client import ZaloClient
from zns_dev.sandbox.config import SandboxConfig

PHONE = "0987654321"

# -- values -------------------------------------------------------------------------------------

HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 10**30, 10**400])
SPECIAL_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324])
#: Characters UTF-8, JSON, Redis's cjson and terminals disagree about: lone surrogates, high and
#: low (fine in a Python str and in Python's json, not in UTF-8 nor in cjson), NUL and other
#: controls, bidi marks (RTL override, RLM, LRM, isolate), a BOM, a line separator, 4-byte
#: characters, the last code points, and what quoting or formatting may trip on.
EDGE_CHARS = (
    "\ud800",
    "\udbff",
    "\udc00",
    "\udfff",
    "\ud83d",  # the first half of an emoji, as a Node producer cutting a string may leave it
    "\x00",
    "\x1f",
    "\x7f",
    "\u202e",
    "\u200f",
    "\u200e",
    "\u2066",
    "\ufeff",
    "\u2028",
    "👍🏽",
    "\U0001d54f",  # mathematical double-struck capital X
    "\U0010ffff",
    "\uffff",
    "\\",
    '"',
    "%s",
)
EDGE_TEXT = st.one_of(
    st.sampled_from(EDGE_CHARS),
    st.lists(st.sampled_from(EDGE_CHARS) | st.characters(), min_size=2, max_size=6).map("".join),
)
WEIRD_TEXT = st.one_of(
    st.text(max_size=30),
    EDGE_TEXT,
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "Nguyễn Văn An",
            "👍🏽",
            "\u202e",
            "0" * 5000,
            "null",
            "${jndi:x}",
            "\ud800",
        ]
    ),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    SPECIAL_FLOATS,
    WEIRD_TEXT,
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(WEIRD_TEXT, inner, max_size=4),
    max_leaves=12,
)
PHONES = st.one_of(
    st.sampled_from(
        [PHONE, "+84 987 654 321", "84987654321", "٠٩٨٧٦٥٤٣٢١", "0987654321\n", "1" * 200, ""]
    ),
    JSONISH,
)
TEMPLATE_IDS = st.one_of(st.sampled_from(["248791", 248791, "tpl_1", "-1", 0]), JSONISH)
TEMPLATE_DATA = st.one_of(
    st.dictionaries(st.text(min_size=1, max_size=8), SCALARS, min_size=1, max_size=3),
    st.dictionaries(WEIRD_TEXT, SCALARS, max_size=6),
    st.just({"amount": 150000, "name": "An"}),
    JSONISH,
)


VALID_JOB: dict[str, Any] = {
    "phone": PHONE,
    "template_id": "248791",
    "template_data": {"amount": 150000, "name": "An"},
    "journey": "ORD-1",
    "token_type": "token_logistics_7",
    "idempotency_key": "ORD-1-shipped",
    "tracking_id": "t-1",
    "account": "default",
}
FUZZED_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "phone": PHONES,
    "template_id": TEMPLATE_IDS,
    "template_data": TEMPLATE_DATA,
    "journey": WEIRD_TEXT | JSONISH,
    "token_type": st.sampled_from(["token_logistics_7", "token_coach_bus_30", "x"]) | JSONISH,
    "idempotency_key": WEIRD_TEXT | JSONISH,
    "tracking_id": st.sampled_from(["t-1", "a" * 48, "a" * 49, "bad id!"]) | JSONISH,
    "account": st.sampled_from(["default", "nope", "a\nb"]) | JSONISH,
    "extra": JSONISH,  # not a field of the contract
}


@st.composite
def job_fields(draw: st.DrawFn, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Producer/task kwargs: a valid job with a few fields fuzzed, dropped or added, so that
    both near-valid and plainly wrong jobs come up."""
    job = dict(VALID_JOB if base is None else base)
    for name in draw(st.lists(st.sampled_from(sorted(FUZZED_FIELDS)), max_size=3, unique=True)):
        if name != "extra" and draw(st.integers(0, 4)) == 0:
            job.pop(name, None)
        else:
            job[name] = draw(FUZZED_FIELDS[name])
    return job


# -- producer API -------------------------------------------------------------------------------


@settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(job=job_fields())
def test_producer_accepts_a_sendable_job_or_raises_invalid_job(job: dict[str, Any]) -> None:
    try:
        valid = Producer.validate(job)
    except InvalidJob as exc:
        assert str(exc)  # a clear message, never an empty one
        return
    # Accepted: the worker parses the same job from what the producer enqueues ...
    assert parse_job(valid.kwargs(), default_key="other") == valid
    # ... and it can travel as JSON (Celery's serializer, then Zalo's API)
    json.dumps(valid.kwargs(), allow_nan=False)


# -- garbage API responses ----------------------------------------------------------------------

ACCESS = SecretStr("ACCESS-TOKEN-NEVER-LEAK")
JOURNEY = SecretStr("JOURNEY-TOKEN-NEVER-LEAK")
SECRET = SecretStr("SECRET-KEY-NEVER-LEAK")
REFRESH = SecretStr("REFRESH-TOKEN-NEVER-LEAK")

RAW_JSON_TEXTS = st.sampled_from(
    [
        '{"error": 1e400}',
        '{"error": -1e400}',
        '{"error": NaN}',
        '{"error": Infinity}',
        '{"error": "0"}',
        '{"error": 0, "data": {"msg_id": "m", "sent_time": 1e400}}',
        '{"error": 0, "data": {"msg_id": "m", "sent_time": "1", '
        '"quota": {"remainingQuota": 1e400, "dailyQuota": "x"}}}',
        '{"error": 0, "data": {"dailyQuota": 1e400, "remainingQuota": -5}}',
        '{"error": 0, "token": "t", "journey_id": 1e400}',
        '{"access_token": "a", "refresh_token": "r", "expires_in": 1e400}',
        '{"access_token": "a", "refresh_token": "r", "expires_in": "90000"}',
        '{"error": 0, "data": null}',
        '{"error": 0, "data": []}',
        "[]",
        "null",
        '"error"',
        "",
        "{",
        '{"error": -124}',
        '{"error": -100, "message": {"nested": true}}',
        '{"error": 99999999999999999999999}',
        # valid JSON of the wrong shape on a success, on every endpoint
        '{"error": 0}',
        '{"error": 0, "data": "x"}',
        '{"error": 0, "data": {"msg_id": 5}}',
        '{"error": 0, "data": {"msg_id": null, "sent_time": "x", "quota": "q"}}',
        '{"error": 0, "data": {"msg_id": ["m"], "quota": {"remainingQuota": "5"}}}',
        '{"error": 0, "data": {"msg_id": "m", "sent_time": 1, "quota": {"remainingQuota": []}}}',
        '{"error": 0, "data": {"msg_id": "\\ud800", "sent_time": "\\udc00"}}',
        '{"error": 0, "data": {"msg_id": {}, "sent_time": true, "quota": null}}',
        '{"error": 0, "token": ["a"], "journey_id": {}}',
        '{"error": 0, "token": null, "journey_id": "j"}',
        '{"error": 0, "token": "\\ud800", "journey_id": 5}',
        '{"error": 0, "data": {"token": "t", "journey_id": "j"}}',
        '{"error": 0, "data": {"status": [], "tokenType": {}, "expiredAt": "x"}}',
        '{"error": 0, "data": {"dailyQuota": "x", "remainingQuota": null}}',
        '{"error": 0, "data": {"dailyQuota": [], "remainingQuota": {"n": 1}}}',
        '{"access_token": {"a": 1}, "refresh_token": "r", "expires_in": "x"}',
        '{"access_token": "a", "refresh_token": null, "expires_in": 90000}',
        '{"access_token": "", "refresh_token": "", "expires_in": -1}',
        '{"access_token": ["a"], "refresh_token": ["r"], "expires_in": []}',
        '{"access_token": "\\ud800", "refresh_token": "r", "expires_in": 90000}',
        '{"error": 0, "access_token": "a"}',
        '{"error": "\\u0000"}',
        '{"error": 0.5, "data": {"msg_id": "m", "sent_time": 1}}',
    ]
)


def body_texts() -> st.SearchStrategy[bytes]:
    """Bodies: garbage bytes, arbitrary JSON, Zalo-shaped JSON with wrong types, special
    numbers."""
    shaped = st.fixed_dictionaries(
        {},
        optional={
            "error": SCALARS,
            "message": JSONISH,
            "data": JSONISH
            | st.fixed_dictionaries(
                {},
                optional={
                    "msg_id": SCALARS,
                    "sent_time": SCALARS,
                    "quota": JSONISH
                    | st.fixed_dictionaries(
                        {}, optional={"remainingQuota": SCALARS, "dailyQuota": SCALARS}
                    ),
                    "dailyQuota": SCALARS,
                    "remainingQuota": SCALARS,
                    "status": SCALARS,
                    "appId": SCALARS,
                    "tokenType ": SCALARS,
                    "createdAt": SCALARS,
                    "expiredAt": SCALARS,
                },
            ),
            "token": SCALARS,
            "journey_id": SCALARS,
            "access_token": SCALARS,
            "refresh_token": SCALARS,
            "expires_in": SCALARS,
            "error_name": SCALARS,
        },
    )
    return st.one_of(
        st.binary(max_size=64),
        RAW_JSON_TEXTS.map(str.encode),
        JSONISH.map(lambda v: json.dumps(v).encode()),
        shaped.map(lambda v: json.dumps(v).encode()),
        shaped.map(lambda v: json.dumps({**v, "error": 0}).encode()),  # a success, any shape
    )


CALLS: dict[str, Callable[[ZaloClient], object]] = {
    "get_journey_token": lambda c: c.get_journey_token(ACCESS, phone="84987654321"),
    "send_template": lambda c: c.send_template(
        ACCESS,
        JOURNEY,
        phone="84987654321",
        template_id="1",
        template_data={"a": "b"},
        tracking_id="t-1",
    ),
    "check_journey_token": lambda c: c.check_journey_token(ACCESS, JOURNEY),
    "quota": lambda c: c.quota(ACCESS),
    "message_status": lambda c: c.message_status(ACCESS, "m-1"),
    "refresh_access_token": lambda c: c.refresh_access_token(
        app_id="app", secret_key=SECRET, refresh_token=REFRESH
    ),
}


def zalo_accepted(status: int, body: bytes) -> bool:
    """Whether the answer says Zalo took the request: HTTP 2xx and a JSON object whose `error` is
    the integer 0, whatever else it holds (for a send: the message is out, never send it again)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    code = parsed.get("error") if isinstance(parsed, dict) else None
    return 200 <= status < 300 and type(code) is int and code == 0


WRONG_SHAPE_SENDS = [
    b'{"error": 0}',
    b'{"error": 0, "data": "x"}',
    b'{"error": 0, "data": {"msg_id": 5}}',
    b'{"error": 0, "data": {"msg_id": "m", "sent_time": 1, "quota": {"remainingQuota": "x"}}}',
    b'{"error": 0, "data": {"msg_id": "m", "sent_time": 1e400}}',
]


@settings(max_examples=600, derandomize=True, database=None, deadline=None)
@given(
    call=st.sampled_from(sorted(CALLS)),
    status=st.sampled_from([200, 200, 200, 204, 302, 400, 401, 404, 429, 500, 502, 503])
    | st.integers(100, 599),
    content_type=st.sampled_from(["application/json", "text/html", "", "application/json; x"]),
    retry_after=st.none() | WEIRD_TEXT | st.sampled_from(["1", "-5", "1e309", "nan", "inf"]),
    body=body_texts(),
)
def test_client_turns_any_answer_into_a_result_or_a_zalo_error(
    call: str, status: int, content_type: str, retry_after: str | None, body: bytes
) -> None:
    headers = {"content-type": content_type}
    if retry_after is not None and retry_after.isprintable() and retry_after.isascii():
        headers["retry-after"] = retry_after

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, content=body)

    client = ZaloClient(
        api_base_url="https://api.test",
        oauth_base_url="https://oauth.test",
        transport=httpx.MockTransport(handler),
    )
    with client:
        try:
            CALLS[call](client)
        except ZaloError as exc:
            assert "NEVER-LEAK" not in f"{exc} {exc!r}"
            # A send Zalo accepted is a send: an error here would send the message again
            assert not (call == "send_template" and zalo_accepted(status, body)), (
                f"Zalo accepted the send ({body[:120]!r}) but the client raised {exc!r}"
            )


for _body in WRONG_SHAPE_SENDS:  # whatever hypothesis draws, these come up
    test_client_turns_any_answer_into_a_result_or_a_zalo_error = example(
        call="send_template",
        status=200,
        content_type="application/json",
        retry_after=None,
        body=_body,
    )(test_client_turns_any_answer_into_a_result_or_a_zalo_error)


# -- raw task messages to a real worker -----------------------------------------------------------

#: Bytes written as they are into a JSON text, where `json.dumps` never puts them. Python's json
#: reads these escapes (lone surrogates, high or low; NUL; a bidi override) but Redis's cjson
#: refuses the surrogates, which is how `broker_pop_many.lua` lost messages and killed workers.
PYTHON_READS = (
    b"\\ud800",
    b"\\udbff",
    b"\\udc00",
    b"\\udfff",
    b"\\udc00\\ud800",
    b"\\ud800\\u0041",
    b"\\u0000",
    b"\\u202e",
)
#: Not UTF-8: overlong "/", a CESU-8 surrogate, beyond U+10FFFF, a truncated sequence, 0xFF.
NOT_UTF8 = (b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xff")
#: Invalid JSON escapes and a raw control character: no JSON reader takes them.
NOBODY_READS = (b"\\x41", b"\\u12", b"\\ud8", b"\\U0001F600", b"\x01")
#: Anywhere: in the broker's envelope (the JSON kombu keeps in the Redis list) or in the task body
#: (base64 in the envelope, or text in it).
SNIPPETS = PYTHON_READS + NOT_UTF8 + NOBODY_READS

#: Real fields renamed as a producer's typo would: refused, the dead letter names them.
TYPOS = {
    "idempotency_key": ["idempotency_kye", "idempotencyKey", "idempotency-key", "idempotency_key "],
    "phone": ["phon", "Phone", "phone_number"],
    "template_id": ["templateId", "template"],
    "template_data": ["templateData", "template_params"],
    "journey": ["jounrey", "journey_id"],
    "tracking_id": ["trackingId", "tracking"],
    "account": ["acount", "oa_id"],
    "token_type": ["tokenType"],
    "step": ["steps", "Step"],
}
#: The worker's own bookkeeping, as a producer might forge it: never a privilege (see
#: test_a_forged_probe_for_a_paused_account_is_parked_not_sent).
FORGED_META = st.one_of(
    st.sampled_from(
        [
            {"probe": True},
            {"probe": True, "history": []},
            {"probe": "true", "signature": "00" * 32},
            {"history": [{"class": "transient", "code": -1, "at": 0}] * 40},
            {"history": [{"class": "order", "since_ms": 0}], "probe": True},
            {"history": "x"},
            {"history": [1, None, "\ud800", {"\udc00": "\u202e"}]},
            "probe",
            None,
        ]
    ),
    JSONISH,
)
HEADER_NAMES = ["argsrepr", "kwargsrepr", "root_id", "parent_id", "group", "origin", "shadow"]
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
UNSET: Any = object()


def valid_kwargs(marker: str) -> dict[str, Any]:
    """A job the worker sends."""
    return {
        "phone": PHONE,
        "template_id": "248791",
        "template_data": {"order": marker},
        "journey": marker,
        "idempotency_key": marker,
    }


@dataclass
class RawMessage:
    """A broker-list entry as a foreign producer wrote it, and how to trace it."""

    marker: str  # in its task id and in the kwargs or a header: found in its dead letter
    kind: str
    wire: bytes
    task_id: str | None
    expect: str | None = None  # it must be dead-lettered with this in the reason


@dataclass
class Draft:
    """A raw message being built: Celery's protocol 2 (headers, body [args, kwargs, embed]) or 1
    (a body {"task", "id", "args", "kwargs", ...}), parts of which a kind then changes.

    `token()` stands for bytes written as they are into the serialised JSON: the envelope's (the
    JSON kombu keeps in the Redis list, read by the batch pop with cjson and by kombu with
    Python's json) or the task body's (base64 in the envelope, or, when `plain`, text in it: read
    by Celery)."""

    marker: str
    kind: str
    headers: dict[str, Any]
    kwargs: Any
    args: Any = field(default_factory=list)
    embed: Any = field(default_factory=lambda: dict(EMBED))
    body: Any = UNSET  # the whole body, instead of [args, kwargs, embed]
    raw_body: bytes | None = None
    content_type: str = "application/json"
    content_encoding: str = "utf-8"
    plain: bool = False
    ascii_body: bool = True
    ascii_envelope: bool = True
    properties: dict[str, Any] = field(default_factory=dict)
    raws: dict[str, bytes] = field(default_factory=dict)
    expect: str | None = None
    envelope: dict[str, Any] = field(default_factory=dict)  # changes; UNSET: key left out
    cut: int = 0  # bytes cut off the end of the list item
    wire: bytes | None = None  # the list item, instead of an envelope

    def token(self, snippet: bytes, *, envelope: bool) -> str:
        """A placeholder for `snippet`, replaced in the envelope's or the body's JSON text."""
        where = "e" if envelope or self.plain else "b"
        name = f"@@{where}{len(self.raws)}@@"
        self.raws[name] = snippet
        return name

    def task_id(self) -> str | None:
        """The Celery task id the message carries (protocol 2: header; 1: body), as the worker
        reads it."""
        if "task" in self.headers:
            value = self.headers.get("id")
        else:
            value = self.body.get("id") if isinstance(self.body, dict) else None
        return self._decoded(value) if isinstance(value, str) else None

    def _decoded(self, text: str) -> str:
        """`text` with its tokens as a JSON reader sees them (bytes not UTF-8: replaced)."""
        for name, snippet in self.raws.items():
            piece = snippet.decode("utf-8", "replace")
            with contextlib.suppress(ValueError):  # unreadable: not a task id anyone sees
                piece = json.loads(f'"{piece}"')
            text = text.replace(name, piece)
        return text

    def finish(self) -> RawMessage:
        """The message as the entry kombu's Redis transport keeps in the list."""
        body = [self.args, self.kwargs, self.embed] if self.body is UNSET else self.body
        properties: dict[str, Any] = {
            "correlation_id": self.task_id() or self.marker,
            "reply_to": f"reply-{self.marker}",
            "delivery_mode": 2,
            "delivery_info": {"exchange": QUEUE, "routing_key": QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": f"tag-{self.marker}",
            **self.properties,
        }
        if self.raw_body is not None:
            data = self.raw_body
        else:
            text = json.dumps(body, ensure_ascii=self.ascii_body, default=str)
            if self.plain:
                del properties["body_encoding"]
            data = self._replace(text.encode("utf-8", "surrogatepass"), "@@b")
        envelope = {
            "body": text if self.plain else base64.b64encode(data).decode(),
            "content-encoding": self.content_encoding,
            "content-type": self.content_type,
            "headers": self.headers,
            "properties": properties,
            **self.envelope,
        }
        envelope = {k: v for k, v in envelope.items() if v is not UNSET}
        text = json.dumps(envelope, ensure_ascii=self.ascii_envelope, default=str)
        wire = self._replace(text.encode("utf-8", "surrogatepass"), "@@e")
        wire = self.wire if self.wire is not None else wire[: len(wire) - self.cut]
        return RawMessage(self.marker, self.kind, wire, self.task_id(), self.expect)

    def _replace(self, data: bytes, prefix: str) -> bytes:
        for name, snippet in self.raws.items():
            if name.startswith(prefix):
                data = data.replace(name.encode(), snippet)
        return data


def edgy(draw: st.DrawFn, draft: Draft, base: str, *, envelope: bool) -> str:
    """`base` with unicode edge cases around it (or raw JSON bytes in it): the marker, when it
    is in `base`, stays whole so the message can be traced."""
    if draw(st.booleans()):
        edge = draw(EDGE_TEXT)
    else:
        edge = draft.token(draw(st.sampled_from(SNIPPETS)), envelope=envelope)
    where = draw(st.sampled_from(["after", "before", "both", "instead"]))
    if where == "instead" and draft.marker not in base:
        return edge
    if where == "before":
        return edge + base
    if where == "both":
        return edge + base + edge
    return base + edge


def message_headers(marker: str) -> dict[str, Any]:
    """Protocol-2 headers as Celery's `send_task` writes them."""
    return {
        "lang": "py",
        "task": TASK_NAME,
        "id": marker,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": marker,
        "parent_id": None,
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": "fuzz@host",
        "ignore_result": False,
        "x-fuzz": marker,
    }


def fuzz_kwargs(draw: st.DrawFn, d: Draft) -> None:
    """A valid job with a few fields fuzzed, dropped or added (the producer fuzz's jobs)."""
    d.kwargs = draw(job_fields(valid_kwargs(d.marker)))


def fuzz_unicode(draw: st.DrawFn, d: Draft) -> None:
    """Unicode edge cases in kwargs values, template_data keys/values and kwargs keys."""
    for name in draw(st.lists(st.sampled_from([*sorted(TYPOS), "key"]), min_size=1, max_size=3)):
        if name == "key":  # a field name nobody knows, or a known one with an invisible mark
            key = edgy(draw, d, draw(st.sampled_from(["phone", "x", ""])), envelope=False)
            d.kwargs[key] = d.kwargs.pop("phone", PHONE) if key.startswith("phone") else "x"
        elif name == "template_data":
            key = edgy(draw, d, "order", envelope=False)
            d.kwargs["template_data"] = {key: edgy(draw, d, d.marker, envelope=False)}
        elif name == "step":
            d.kwargs["step"] = draw(st.sampled_from([1, 2, "1", "\u0661", 1.0]) | EDGE_TEXT)
        else:
            d.kwargs[name] = edgy(draw, d, str(d.kwargs.get(name, d.marker)), envelope=False)


def fuzz_raw_escape(draw: st.DrawFn, d: Draft) -> None:
    """Raw bytes (invalid escapes, surrogate escapes, non-UTF-8) in the task body's JSON."""
    d.plain = draw(st.booleans())
    for name in draw(st.lists(st.sampled_from(["journey", "template_data", "phone"]), min_size=1)):
        raw = d.token(draw(st.sampled_from(SNIPPETS)), envelope=False)
        if name == "template_data":
            d.kwargs["template_data"] = {"order": d.marker + raw}
        else:
            d.kwargs[name] = str(d.kwargs[name]) + raw


def fuzz_id(draw: st.DrawFn, d: Draft) -> None:
    """Edge cases in the task id (a Node producer cutting an emoji in two), its root, parent and
    correlation ids; without an idempotency key the task id becomes the job's key."""
    d.headers["id"] = edgy(draw, d, d.marker, envelope=True)
    for name in draw(st.lists(st.sampled_from(["root_id", "parent_id", "correlation_id"]))):
        value = edgy(draw, d, d.marker, envelope=True)
        (d.properties if name == "correlation_id" else d.headers)[name] = value
    if draw(st.booleans()):
        del d.kwargs["idempotency_key"]


def fuzz_header_text(draw: st.DrawFn, d: Draft) -> None:
    """Edge cases in the other headers' values and names, and in reply_to."""
    for name in draw(st.lists(st.sampled_from([*HEADER_NAMES, "x-name", "reply_to"]), min_size=1)):
        value = edgy(draw, d, draw(st.sampled_from(["", "x", "()", "{}"])), envelope=True)
        if name == "x-name":
            d.headers["x-" + value] = d.marker
        elif name == "reply_to":
            d.properties["reply_to"] = value
        else:
            d.headers[name] = value
    d.ascii_envelope = draw(st.booleans())


def fuzz_meta(draw: st.DrawFn, d: Draft) -> None:
    """A forged `_meta`: on an active account it is sent or refused, nothing else."""
    d.kwargs["_meta"] = draw(FORGED_META)


def fuzz_typo(draw: st.DrawFn, d: Draft) -> None:
    """A real field renamed (or an unknown one added): refused, the reason names it."""
    field_name = draw(st.sampled_from(sorted(TYPOS)))
    typo = draw(st.sampled_from(TYPOS[field_name]))
    present = field_name in d.kwargs
    value = d.kwargs.pop(field_name, 2 if field_name == "step" else "x")
    if present and draw(st.booleans()):
        d.kwargs[field_name] = value  # kept: the typo comes on top
    d.kwargs[typo] = value
    d.expect = typo


def fuzz_args(draw: st.DrawFn, d: Draft) -> None:
    """Positional arguments (the contract is kwargs only)."""
    d.args = draw(st.lists(JSONISH, min_size=1, max_size=3))


def fuzz_body(draw: st.DrawFn, d: Draft) -> None:
    """[args, kwargs, embed] of the right container types, fuzzed contents."""
    d.embed = draw(st.none() | st.dictionaries(WEIRD_TEXT, JSONISH, max_size=3))
    d.args = draw(st.lists(JSONISH, max_size=2))
    d.kwargs = draw(st.dictionaries(WEIRD_TEXT, JSONISH, max_size=4) | st.just(d.kwargs))
    d.headers["x-fuzz-body"] = d.marker
    d.ascii_body = draw(st.booleans())


def fuzz_headers(draw: st.DrawFn, d: Draft) -> None:
    """Celery's own headers with wrong values (dates as strings: see test_regressions.py)."""
    name = draw(st.sampled_from(["eta", "expires", "retries", "lang", "argsrepr", "group"]))
    dates = WEIRD_TEXT | st.sampled_from(["not-a-date", "2020-13-45T99:99:99", "2020-01-01\ud800"])
    d.headers[name] = draw(dates if name in ("eta", "expires") else JSONISH)


def fuzz_task(draw: st.DrawFn, d: Draft) -> None:
    """A task name this worker does not run."""
    names = st.sampled_from(["zns.nope", "", "os.system", TASK_NAME + "\u200f", TASK_NAME + " "])
    d.headers["task"] = draw(names | WEIRD_TEXT | EDGE_TEXT)


def fuzz_garbage(draw: st.DrawFn, d: Draft) -> None:
    """A body that is not JSON (starting with the marker, so its dead letter shows it)."""
    d.raw_body = d.marker.encode() + draw(st.binary(max_size=200))
    d.content_type = draw(st.sampled_from(["application/json", "text/x", "application/x-yaml"]))
    d.content_encoding = "binary"


def fuzz_envelope(draw: st.DrawFn, d: Draft) -> None:
    """kombu's envelope itself, as a producer that is not kombu might write it: odd delivery
    tags and info, body encodings, content types, headers or properties of the wrong type, an
    item cut short, an item that is no JSON at all."""
    change = draw(st.sampled_from(["tag", "info", "encoding", "content", "shape", "cut", "junk"]))
    if change == "tag":
        odd = st.sampled_from([None, 5, "", ["t"]])
        tag = edgy(draw, d, f"tag-{d.marker}", envelope=True) if draw(st.booleans()) else draw(odd)
        d.properties["delivery_tag"] = tag
    elif change == "info":
        infos = [None, "zns", {}, {"exchange": 5, "routing_key": QUEUE}, {"routing_key": ["x"]}]
        d.properties["delivery_info"] = draw(st.sampled_from(infos))
    elif change == "encoding":
        encodings = [None, "base32", "BASE64", "utf-8", 5, "\ud800"]
        d.properties["body_encoding"] = draw(st.sampled_from(encodings))
    elif change == "content":
        types = [None, 5, ["application/json"], "APPLICATION/JSON", "application/json; x=\u202e"]
        d.envelope[draw(st.sampled_from(["content-type", "content-encoding"]))] = draw(
            st.sampled_from(types)
        )
    elif change == "shape":
        part = draw(st.sampled_from(["headers", "properties", "body"]))
        d.envelope[part] = draw(st.sampled_from([UNSET, None, [], "x", 5]))
    elif change == "cut":
        d.cut = draw(st.integers(1, 40))  # the headers (with the marker) stay whole
    else:
        d.wire = d.marker.encode() + draw(st.binary(max_size=100))


def fuzz_v1(draw: st.DrawFn, d: Draft) -> None:
    """Celery's protocol 1 (older and non-Python producers): no `task` header, everything in
    the body, edge cases in its task name, id and kwargs."""
    d.plain = draw(st.booleans())
    if draw(st.booleans()):
        d.kwargs = draw(job_fields(valid_kwargs(d.marker)))
    to_protocol_1(d)
    d.headers = draw(st.sampled_from([{}, {"x-fuzz": d.marker}]))
    for name in draw(st.lists(st.sampled_from(["task", "id", "kwargs"]), max_size=2, unique=True)):
        if name == "task":
            d.body["task"] = edgy(draw, d, TASK_NAME, envelope=False)
        elif name == "id":
            d.body["id"] = edgy(draw, d, d.marker, envelope=False)
        else:
            fuzz_unicode(draw, d)  # the body holds d.kwargs itself


def fuzz_not_a_task(draw: st.DrawFn, d: Draft) -> None:
    """No task header, and a body that is no protocol-1 task either."""
    d.headers = {"x-fuzz": d.marker}
    d.body = draw(st.sampled_from([{"m": d.marker}, [d.marker], d.marker, {"id": d.marker}]))


FUZZ_KINDS: dict[str, Callable[[st.DrawFn, Draft], None]] = {
    "kwargs": fuzz_kwargs,
    "unicode": fuzz_unicode,
    "raw-escape": fuzz_raw_escape,
    "id": fuzz_id,
    "header-text": fuzz_header_text,
    "meta": fuzz_meta,
    "typo": fuzz_typo,
    "args": fuzz_args,
    "body": fuzz_body,
    "headers": fuzz_headers,
    "task": fuzz_task,
    "garbage": fuzz_garbage,
    "v1": fuzz_v1,
    "not-a-task": fuzz_not_a_task,
    "envelope": fuzz_envelope,
}
#: How often each kind comes up: the new edge cases more than the old.
KIND_WEIGHTS = {"kwargs": 2, "unicode": 3, "id": 3, "header-text": 2, "v1": 2, "envelope": 2}
#: Every kind, as often as its weight: a batch takes its kinds from a permutation of this list
#: (hypothesis's first, simplest permutation is the list itself: every kind comes up at once).
KIND_ORDER = [
    kind
    for turn in range(max(KIND_WEIGHTS.values()))
    for kind in FUZZ_KINDS
    if KIND_WEIGHTS.get(kind, 1) > turn
]


@st.composite
def raw_messages(draw: st.DrawFn, marker: str, kind: str) -> RawMessage:
    """One entry for the `zns` list: a Celery task message with one kind of fault, as a foreign
    producer could write it. The marker is in the task id and in the headers or kwargs, so each
    message can be traced to its outcome."""
    draft = Draft(marker, kind, message_headers(marker), valid_kwargs(marker))
    FUZZ_KINDS[kind](draw, draft)
    return draft.finish()


def push_raw(chaos: Chaos, messages: list[RawMessage]) -> None:
    """Write the entries to the `zns` list in one LPUSH, as kombu's Redis transport does per
    message: the worker's BRPOP takes the first, `broker_pop_many.lua` the next ones."""
    raw_broker = redis.Redis.from_url(chaos.redis_server.url)
    try:
        raw_broker.lpush(QUEUE, *[m.wire for m in messages])
    finally:
        raw_broker.close()


def publish_raw(url: str, messages: list[dict[str, Any]]) -> None:
    """Publish raw bytes to the `zns` queue as a foreign producer would."""
    exchange = Exchange(QUEUE, type="direct")
    queue = Queue(QUEUE, exchange, routing_key=QUEUE)
    with Connection(url) as conn:
        producer = KombuProducer(conn.channel())
        for m in messages:
            producer.publish(
                m["body"],
                exchange=exchange,
                routing_key=QUEUE,
                declare=[queue],
                headers=m["headers"],
                content_type=m["content_type"],
                content_encoding="utf-8" if m["kind"] != "garbage" else "binary",
                serializer=None,
                retry=True,
            )


@dataclass(frozen=True)
class Fate:
    """What became of one raw message."""

    outcome: str  # 'dead', 'sent', 'duplicate', … (the task's result status), 'none', …
    reasons: tuple[str, ...] = ()  # its dead letters' reasons


def fates_of(chaos: Chaos, messages: list[RawMessage]) -> dict[str, Fate]:
    """Each message's fate, by marker: 'dead' (a dead letter mentions it), the task's result
    ('sent', 'duplicate', …, 'FAILURE' when an exception escaped the task), 'sent' (Zalo has it,
    no result could be stored), 'sent twice' or 'sent and dead' (never right), or 'none'.

    Results are read first: a task stores its result after its dead letter or its send, so
    whatever a result says is already in what is read next."""
    results = {m.marker: result_status(chaos, m.task_id) for m in messages}
    reasons: dict[str, list[str]] = {m.marker: [] for m in messages}
    for entry in chaos.runtime.dead_letters.entries(limit=10_000):
        text = json.dumps([entry.task_id, entry.kwargs, entry.idempotency_key], default=str)
        for marker, mentions in reasons.items():
            if marker in text:
                mentions.append(entry.reason)
    sends = dict.fromkeys(reasons, 0)
    tracking = {derive_tracking_id(m): m for m in reasons}
    for sent in chaos.control.messages():
        text = json.dumps(sent.template_data)
        for marker in reasons:
            if marker in text or tracking.get(sent.tracking_id or "") == marker:
                sends[marker] += 1
    fates = {}
    for marker, mentions in reasons.items():
        if mentions:
            outcome = "sent and dead" if sends[marker] else "dead"
        elif sends[marker] > 1:
            outcome = "sent twice"
        else:
            outcome = results[marker] or ("sent" if sends[marker] else "none")
        fates[marker] = Fate(outcome, tuple(mentions))
    return fates


def result_status(chaos: Chaos, task_id: str | None) -> str | None:
    """The stored Celery result's status ('sent', 'duplicate', …, or Celery's state)."""
    if task_id is None:
        return None
    try:
        value = chaos.runtime.redis.get(f"celery-task-meta-{task_id}")
    except UnicodeEncodeError:  # a lone surrogate: no result can be stored under it
        return None
    if not value:
        return None
    meta = json.loads(value)
    result = meta.get("result")
    if meta.get("status") == "SUCCESS" and isinstance(result, dict):
        return str(result.get("status"))
    return str(meta.get("status"))


def verdict(message: RawMessage, fate: Fate) -> str | None:
    """What is wrong with a message's fate, or None."""
    if fate.outcome not in ("sent", "duplicate", "dead"):
        return fate.outcome
    if message.expect is None:
        return None
    if fate.outcome != "dead":
        return f"{fate.outcome}, expected a dead letter naming {message.expect!r}"
    # The name as it is, or escaped as repr() shows it (an invisible mark, a lone surrogate)
    names = (message.expect, message.expect.encode("unicode_escape").decode())
    if not any(name in reason for name in names for reason in fate.reasons):
        return f"dead letter reason {fate.reasons} does not name {message.expect!r}"
    return None


def held_markers(chaos: Chaos) -> list[str]:
    """The markers of what is still queued or unacked, for a failure message."""
    raw_broker = redis.Redis.from_url(chaos.redis_server.url)
    try:
        entries = [*raw_broker.hvals(UNACKED), *raw_broker.lrange(QUEUE, 0, -1)]
    finally:
        raw_broker.close()
    found = []
    for entry in entries:
        text = entry.decode("utf-8", "replace") if isinstance(entry, bytes) else str(entry)
        markers = re.findall(r"fz-[a-z0-9-]+", text)
        found.append(markers[0] if markers else repr(text[:80]))
    return found


def death_cause(log: str) -> str:
    """Why a worker exited, from its log: Celery's last critical line and the exception it
    names, else the end of the log."""
    for line in reversed(log.splitlines()):
        if '"CRITICAL"' not in line:
            continue
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            trace = str(record.get("exc_info", "")).strip().splitlines()
            return f"{record.get('message')} ({trace[-1] if trace else 'no traceback'})"
    return log[-2000:]


#: Outcomes that may still change: nothing yet, or Celery's states of a task under way.
UNSETTLED = frozenset({"none", "PENDING", "RECEIVED", "STARTED", "RETRY"})


def settle(
    chaos: Chaos, worker: WorkerProcess, messages: list[RawMessage], *, timeout_s: float
) -> dict[str, str]:
    """Wait (bounded) until the broker is idle and every message has ended; returns what is
    wrong, by message (empty: each was sent, a duplicate or dead-lettered as expected)."""
    process = worker.process
    assert process is not None
    deadline = time.monotonic() + timeout_s
    fates = fates_of(chaos, messages)
    while time.monotonic() < deadline and process.poll() is None:
        if chaos.broker_idle() and not any(f.outcome in UNSETTLED for f in fates.values()):
            break
        time.sleep(0.2)
        fates = fates_of(chaos, messages)
    bad = {}
    if process.poll() is not None:
        bad["worker"] = f"died (exit {process.poll()}): {death_cause(worker.log())}"
    elif not chaos.broker_idle():
        bad["broker"] = f"not idle after {timeout_s:.0f}s, still held: {held_markers(chaos)}"
    for m in messages:
        problem = verdict(m, fates[m.marker])
        if problem:
            bad[f"{m.kind}:{m.marker}"] = problem
            print(f"{m.kind}:{m.marker}: {problem}\n  task id {m.task_id!r}\n  {m.wire!r}")
    return bad


class RawFuzz:
    """Counts over every example of the raw-message fuzz, for the report row."""

    def __init__(self) -> None:
        self.published = 0
        self.sent = 0
        self.dead = 0
        self.bad: list[str] = []
        self.started = time.monotonic()
        self.kinds: dict[str, int] = {}
        self.final_sent = False
        self._markers = itertools.count()

    def next_marker(self) -> str:
        """A marker of fixed width (no marker is part of another), the same in every run."""
        return f"fz-{next(self._markers):05d}"

    def run(self, chaos: Chaos, worker: WorkerProcess, messages: list[RawMessage]) -> None:
        """Push one batch, wait for it, count it; fail on any message not accounted for."""
        push_raw(chaos, messages)
        bad = settle(chaos, worker, messages, timeout_s=DRAIN_S)
        fates = fates_of(chaos, messages)
        for m in messages:
            self.kinds[m.kind] = self.kinds.get(m.kind, 0) + 1
        self.published += len(messages)
        self.sent += sum(1 for f in fates.values() if f.outcome in ("sent", "duplicate"))
        self.dead += sum(1 for f in fates.values() if f.outcome == "dead")
        self.bad.extend(bad)
        if bad:
            print(worker.log()[-4000:])
        assert not bad, f"messages not sent or dead-lettered as they should: {bad}"


#: How long one batch may take to end (a dozen messages end in well under a second).
DRAIN_S = 20.0


@pytest.mark.timeout(600)
def test_raw_task_messages_end_sent_or_dead_lettered(
    new_chaos: Callable[..., Chaos],
    size: Callable[[int, int], int],
    record: Callable[[Row], None],
) -> None:
    # Given a real worker consuming `zns`
    chaos = new_chaos(sandbox=SandboxConfig(port=0), appendonly=False)
    worker = chaos.start_worker(concurrency=8)
    fuzz = RawFuzz()

    @settings(
        max_examples=size(80, 300),
        derandomize=True,  # the same messages in every run: `make test` is never a coin toss
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: each example needs a drain
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def example(data: st.DataObject) -> None:
        # When a batch of raw messages is written to the broker by a foreign producer (in one
        # LPUSH: the worker's BRPOP takes the first, broker_pop_many.lua the next ones)
        count = data.draw(st.integers(1, 12), label="batch size")
        kinds = data.draw(st.permutations(KIND_ORDER), label="kinds")[:count]
        messages = [data.draw(raw_messages(fuzz.next_marker(), kind)) for kind in kinds]
        # Then the worker lives, and each message is sent or dead-lettered, none left behind
        fuzz.run(chaos, worker, messages)

    try:
        example()
    finally:
        # And a valid job after all that garbage is still sent (the consumer is not stuck)
        marker = "fz-final"
        Producer(chaos.settings).enqueue(**valid_kwargs(marker))
        tracking_id = derive_tracking_id(marker)

        def final_sent() -> bool:
            return any(m.tracking_id == tracking_id for m in chaos.control.messages())

        deadline = time.monotonic() + 30
        while not final_sent() and time.monotonic() < deadline:
            time.sleep(0.2)
        fuzz.final_sent = final_sent()
        record(
            Row(
                scenario="fuzz: raw task messages",
                tier="",
                enqueued=fuzz.published,
                sent_once=fuzz.sent,
                sent_twice=0,
                lost=len(fuzz.bad),
                dead_lettered=fuzz.dead,
                drain_s=round(time.monotonic() - fuzz.started, 1),
                passed=not fuzz.bad and fuzz.final_sent,
                notes="kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(fuzz.kinds.items())),
                details={"not_handled": fuzz.bad, "valid_job_sent_after": fuzz.final_sent},
            )
        )
    assert fuzz.final_sent, f"a valid job after the fuzz was not sent:\n{worker.log()[-3000:]}"


# -- the edge cases that must come up, one by one -------------------------------------------------


def to_protocol_1(d: Draft, *, task: str = TASK_NAME, task_id: str | None = None) -> None:
    """Make `d` a protocol-1 message (no task headers; task, id, args and kwargs in the body)."""
    d.body = {
        "task": task,
        "id": d.marker if task_id is None else task_id,
        "args": [],
        "kwargs": d.kwargs,
        "retries": 0,
        "eta": None,
        "expires": None,
        "utc": True,
        "callbacks": None,
        "errbacks": None,
        "timelimit": [None, None],
        "taskset": None,
        "chord": None,
    }
    d.headers = {"x-fuzz": d.marker}


def _id_without_key(d: Draft) -> None:
    d.headers["id"] = d.marker + "\ud83d"  # the first half of an emoji, as a cut Node string
    del d.kwargs["idempotency_key"]


def _ids_in_properties(d: Draft) -> None:
    d.properties["correlation_id"] = d.marker + "\udc00"
    d.properties["reply_to"] = "\ud800"


def _v1_plain_escape(d: Draft) -> None:
    d.plain = True
    d.kwargs["journey"] = d.marker + d.token(b"\\ud800", envelope=False)
    to_protocol_1(d)


def _rename(d: Draft, name: str, typo: str) -> None:
    d.kwargs[typo] = d.kwargs.pop(name)
    d.expect = typo


#: name -> how the message differs from a valid one, and what its dead letter's reason must name
#: (None: sent or dead-lettered, either is right). Each is pushed between two valid messages.
EDGE_CASES: dict[str, tuple[Callable[[Draft], None], str | None]] = {
    "lone high surrogate in a header": (lambda d: d.headers.update({"x-note": "\ud800"}), None),
    "lone low surrogate in argsrepr": (lambda d: d.headers.update({"argsrepr": "(\udc00)"}), None),
    "surrogate then letter in kwargsrepr (raw escapes)": (
        lambda d: d.headers.update({"kwargsrepr": d.token(b"\\ud800\\u0041", envelope=True)}),
        None,
    ),
    "lone surrogates in root_id and parent_id": (
        lambda d: d.headers.update({"root_id": d.marker + "\udbff", "parent_id": "\udfff"}),
        None,
    ),
    "lone surrogate in a header name": (lambda d: d.headers.update({"x-\ud800": "x"}), None),
    "lone surrogate in the task id": (
        lambda d: d.headers.update({"id": d.marker + "\ud83d"}),
        None,
    ),
    "lone surrogate in the task id, no idempotency key": (_id_without_key, None),
    "lone surrogates in correlation_id and reply_to": (_ids_in_properties, None),
    "invalid UTF-8 in the envelope": (
        lambda d: d.headers.update({"x-note": d.token(b"\xed\xa0\x80\xc0\xaf", envelope=True)}),
        None,
    ),
    "invalid escape \\x41 in the envelope": (
        lambda d: d.headers.update({"x-note": d.token(b"\\x41", envelope=True)}),
        None,
    ),
    "raw control character in the envelope (cjson reads it, Python's json does not)": (
        lambda d: d.headers.update({"x-note": d.token(b"\x01", envelope=True)}),
        None,
    ),
    "a list item that is no JSON at all": (
        lambda d: setattr(d, "wire", d.marker.encode() + b"\x00\xff{"),
        None,
    ),
    "protocol 1: lone surrogate in the id": (
        lambda d: to_protocol_1(d, task_id=d.marker + "\ud83d"),
        None,
    ),
    "protocol 1: lone surrogate in the task name": (
        lambda d: to_protocol_1(d, task=TASK_NAME + "\udc00"),
        None,
    ),
    "protocol 1: unknown task, lone surrogate in the id": (
        lambda d: to_protocol_1(d, task="zns.nope", task_id=d.marker + "\ud800"),
        None,
    ),
    "protocol 1: body as text in the envelope, surrogate escape in kwargs": (
        _v1_plain_escape,
        None,  # the body cannot be read: no field to name
    ),
    "lone surrogate in a kwargs value": (
        lambda d: d.kwargs.update({"journey": d.marker + "\ud800"}),
        "journey",
    ),
    "lone surrogate in a template_data key": (
        lambda d: d.kwargs.update({"template_data": {"\ud800": d.marker}}),
        "template_data",
    ),
    "lone surrogate as a kwargs key": (lambda d: d.kwargs.update({"\udc00": "x"}), "\udc00"),
    "NUL, RTL and LTR marks around the journey": (
        lambda d: d.kwargs.update({"journey": "\x00\u202e" + d.marker + "\u200f"}),
        None,
    ),
    "4-byte characters in template_data": (
        lambda d: d.kwargs.update(
            {"template_data": {"order": d.marker + "👍🏽\U0001d54f\U0010ffff"}}
        ),
        None,
    ),
    "invalid escape \\x41 in the body": (
        lambda d: d.kwargs.update({"journey": d.marker + d.token(b"\\x41", envelope=False)}),
        None,
    ),
    "truncated escape \\u12 in the body": (
        lambda d: d.kwargs.update({"journey": d.marker + d.token(b"\\u12", envelope=False)}),
        None,
    ),
    "overlong UTF-8 in the body": (
        lambda d: d.kwargs.update({"journey": d.marker + d.token(b"\xc0\xaf", envelope=False)}),
        None,
    ),
    "typo idempotency_kye": (lambda d: _rename(d, "idempotency_key", "idempotency_kye"), None),
    "typo idempotency_key with a trailing space": (
        lambda d: _rename(d, "idempotency_key", "idempotency_key "),
        None,
    ),
    "unknown field phone with a bidi mark": (lambda d: _rename(d, "phone", "phone\u200f"), None),
    "forged _meta probe, account active": (
        lambda d: d.kwargs.update({"_meta": {"probe": True, "history": []}}),
        None,
    ),
}


@pytest.fixture(scope="module")
def edge_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    """One world for the edge cases; each case gets a live worker and a clean broker."""
    with Chaos(
        tmp_path_factory.mktemp("edge"), sandbox=SandboxConfig(port=0), appendonly=False
    ) as w:
        yield w


#: Cases also tried as the first message of the batch, taken by kombu's own BRPOP rather than
#: the Lua batch pop: what happens to them past the broker (the task id as a result key, as the
#: default idempotency key, in Celery's unknown-task path).
FIRST_IN_LINE = (
    "invalid escape \\x41 in the envelope",
    "raw control character in the envelope (cjson reads it, Python's json does not)",
    "a list item that is no JSON at all",
    "lone surrogate in the task id",
    "lone surrogate in the task id, no idempotency key",
    "lone surrogates in root_id and parent_id",
    "lone surrogates in correlation_id and reply_to",
    "protocol 1: lone surrogate in the id",
    "protocol 1: unknown task, lone surrogate in the id",
)


@pytest.mark.parametrize(
    ("case", "position"),
    [
        *(pytest.param(case, 1, id=case) for case in EDGE_CASES),
        *(pytest.param(case, 0, id=f"{case} (first, BRPOP)") for case in FIRST_IN_LINE),
    ],
)
def test_an_edge_case_message_ends_sent_or_dead_lettered(
    edge_world: Chaos, case: str, position: int
) -> None:
    world = edge_world
    alive = world.alive_workers()
    worker = alive[0] if alive else world.start_worker(concurrency=4)
    change, expect = EDGE_CASES[case]
    index = list(EDGE_CASES).index(case)
    markers = [f"fz-edge{index:02d}{position}-{i}" for i in range(3)]
    drafts = [Draft(m, "edge", message_headers(m), valid_kwargs(m)) for m in markers]
    # When the message comes among valid ones, in one LPUSH: second, it is taken by the Lua
    # batch pop after the first one's BRPOP; first, by the BRPOP
    change(drafts[position])
    drafts[position].expect = drafts[position].expect or expect
    messages = [d.finish() for d in drafts]
    push_raw(world, messages)
    # Then the worker lives, each of the three is sent or dead-lettered, nothing is left behind
    bad = settle(world, worker, messages, timeout_s=10)
    if bad:
        for held in world.alive_workers():
            held.kill()
        world.broker.delete(*QUEUE_LISTS, UNACKED, UNACKED_INDEX)
    assert not bad, bad


# -- forged bookkeeping -------------------------------------------------------------------------

#: `_meta` as a producer could forge it to make a step a probe for a paused account: bare, with
#: an empty history, and with a made-up signature under the names one would guess.
FORGED_PROBES: list[dict[str, Any]] = [
    {"probe": True},
    {"probe": True, "history": []},
    {"probe": True, "history": [], "sig": "0" * 64, "signature": "0" * 64, "hmac": "0" * 64},
]


@pytest.mark.timeout(120)
def test_a_forged_probe_for_a_paused_account_is_parked_not_sent(
    new_chaos: Callable[..., Chaos],
) -> None:
    # Given a worker, and account `default` paused by an operator (as `zns account pause`); the
    # worker's own canary (one parked step sent as a probe, worker/maintenance.py) is held off
    # by taking its once-per-interval lock, so that only a forged probe could send anything
    chaos = new_chaos(sandbox=SandboxConfig(port=0), appendonly=False)
    canary = chaos.runtime.keys.probe_lock(DEFAULT_ACCOUNT, "paused")
    assert Lock(chaos.runtime.redis, canary, ttl_s=3600).acquire()
    assert chaos.runtime.accounts.pause(DEFAULT_ACCOUNT, reason="operator: balance")
    chaos.start_worker(concurrency=4)
    # When a producer enqueues steps with `_meta={"probe": True}` (bare Celery, protocols 2, 1)
    task_ids = []
    for protocol in (2, 1):
        app = Celery(f"forger-{protocol}", broker=chaos.redis_server.url)
        app.conf.task_protocol = protocol
        for index, meta in enumerate(FORGED_PROBES):
            kwargs = {**valid_kwargs(f"fz-forged-p{protocol}-{index}"), "_meta": meta}
            task_ids.append(app.send_task(TASK_NAME, kwargs=kwargs, queue=QUEUE).id)
        app.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not chaos.control.messages():
        if chaos.broker_idle() and chaos.parked() >= len(task_ids):
            break
        time.sleep(0.2)
    # Then nothing is sent, each step is parked until the account is resumed, and the account
    # is still paused
    sent = chaos.control.messages()
    statuses = [result_status(chaos, task_id) for task_id in task_ids]
    assert not sent, f"a forged probe was sent: {len(sent)} message(s), results {statuses}"
    assert chaos.runtime.accounts.status(DEFAULT_ACCOUNT) is not None, "the account was resumed"
    assert statuses == ["parked"] * len(task_ids), statuses
    assert chaos.parked() == len(task_ids)
