"""Reading one raw message off a Redis broker list, whatever a producer put there.

kombu trusts the envelope it pops (`{"body", "content-type", "headers", "properties":
{"delivery_tag", "delivery_info", "body_encoding"}}`): a list item that is not JSON, not UTF-8,
an envelope of the wrong shape, a body that is not the base64 it claims, or a delivery tag Redis
cannot store (a lone surrogate) raises inside the consumer, and the worker exits with the message
already popped: lost. Here every item becomes an envelope kombu can handle:

- a sound envelope is delivered as it is;
- one whose delivery tag or delivery info cannot be used gets a fresh tag or the info of the
  queue it came from (what a restore needs to put it back);
- anything else is wrapped, its raw bytes as the body, in an envelope of content type
  `UNREADABLE`: Celery's consumer dead-letters it with the reason (tasks/envelope.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any

#: Content type of a wrapped unreadable broker message; the reason travels in a header.
UNREADABLE = "application/x-zns-unreadable"
REASON_HEADER = "x-zns-unreadable"
CONTENT_FIELDS = ("content-type", "content-encoding")


def envelope_of(item: bytes | str, queue: str, *, tag: str | None = None) -> dict[str, Any]:
    """The kombu envelope for a list item popped from `queue`: as sent, mended or wrapped.

    `tag`: the delivery tag the batch pop registered the item under (the ack must name it), kept
    whatever the item holds. The text is read as kombu reads it: bytes that are not UTF-8
    replaced, control characters allowed inside strings."""
    raw = item if isinstance(item, bytes) else item.encode("utf-8", "surrogatepass")
    try:
        payload = json.loads(raw.decode("utf-8", "replace"), strict=False)
    except (ValueError, RecursionError):
        return wrapped(raw, queue, "not a JSON broker envelope", tag=tag)
    problem = _problem(payload)
    if problem:
        return wrapped(raw, queue, problem, tag=tag or _tag_of(payload))
    _mend(payload, queue, tag)
    return payload  # type: ignore[no-any-return]  # checked to be a dict by `_problem`


def wrapped(raw: bytes, queue: str, reason: str, *, tag: str | None = None) -> dict[str, Any]:
    """A kombu envelope carrying `raw` untouched, for the consumer to dead-letter. It keeps the
    message's own delivery tag when it has a usable one: the batch pop registered it as unacked
    under that tag, and the ack must find it."""
    return {
        "body": base64.b64encode(raw).decode("ascii"),
        "content-type": UNREADABLE,
        "content-encoding": "binary",
        "headers": {REASON_HEADER: reason},
        "properties": {
            "delivery_tag": tag or uuid.uuid4().hex,
            "delivery_info": {"exchange": queue, "routing_key": queue},
            "body_encoding": "base64",
        },
    }


def _problem(payload: Any) -> str | None:
    """Why kombu could not build a message from this envelope, or None."""
    if not isinstance(payload, dict) or not isinstance(payload.get("properties"), dict):
        return "not a broker envelope (no `properties` object)"
    if not isinstance(payload.get("headers"), dict | None):
        return "envelope `headers` is not an object"
    if not all(
        isinstance(payload.get(k), str | None) for k in ("content-type", "content-encoding")
    ):
        return "envelope content type or encoding is not a string"
    return _body_problem(payload.get("body"), payload["properties"].get("body_encoding"))


def _body_problem(body: Any, encoding: Any) -> str | None:
    if not body or encoding is None or (isinstance(encoding, str) and encoding.lower() == "utf-8"):
        return None if isinstance(body, str | None) or not body else "body is not text"
    if encoding != "base64":
        return f"unknown body encoding {str(encoding)[:40]!r}"
    if not isinstance(body, str):
        return "base64 body is not text"
    try:
        base64.b64decode(body.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return "body is not the base64 it claims"
    return None


def _tag_of(payload: Any) -> str | None:
    props = payload.get("properties") if isinstance(payload, dict) else None
    tag = props.get("delivery_tag") if isinstance(props, dict) else None
    return tag if _storable(tag) else None


def _mend(payload: dict[str, Any], queue: str, tag: str | None) -> None:
    """Give a sound envelope a delivery tag and delivery info Redis and a restore can use."""
    props = payload["properties"]
    if tag is not None:
        props["delivery_tag"] = tag
    elif not _storable(props.get("delivery_tag")):
        props["delivery_tag"] = uuid.uuid4().hex
    info = props.get("delivery_info")
    if not (
        isinstance(info, dict)
        and _storable(info.get("exchange"), empty=True)
        and _storable(info.get("routing_key"), empty=True)
    ):
        props["delivery_info"] = {"exchange": queue, "routing_key": queue}


def _storable(value: Any, *, empty: bool = False) -> bool:
    """A string Redis can store as a key or field (UTF-8 encodable)."""
    if not isinstance(value, str) or (not value and not empty):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
