"""Zalo's webhook signature: header `X-ZEvent-Signature: mac=<hex>` where the mac is the SHA-256
hex digest of app id + raw body + timestamp + OA secret key (a plain hash, not an HMAC: that is
how Zalo defines it). The timestamp is the body's own `timestamp` field, as written there.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

HEADER: Final = "X-ZEvent-Signature"
PREFIX: Final = "mac="


def mac(*, app_id: str, body: bytes, timestamp: str, secret_key: str) -> str:
    """The hex digest Zalo puts after `mac=`."""
    digest = hashlib.sha256()
    for part in (app_id.encode(), body, timestamp.encode(), secret_key.encode()):
        digest.update(part)
    return digest.hexdigest()


def header_value(*, app_id: str, body: bytes, timestamp: str, secret_key: str) -> str:
    """The whole header value, as the sandbox sends it."""
    return PREFIX + mac(app_id=app_id, body=body, timestamp=timestamp, secret_key=secret_key)


def verify(
    header: str | None, *, app_id: str, body: bytes, timestamp: str, secret_key: str
) -> bool:
    """True when `header` carries the right mac (compared in constant time)."""
    if header is None or not header.strip().startswith(PREFIX):
        return False
    given = header.strip().removeprefix(PREFIX).strip().lower()
    expected = mac(app_id=app_id, body=body, timestamp=timestamp, secret_key=secret_key)
    return hmac.compare_digest(given.encode(), expected.encode())
