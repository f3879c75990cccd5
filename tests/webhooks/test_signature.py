"""X-ZEvent-Signature: mac = sha256(app_id + raw body + timestamp + OA secret key)."""

from __future__ import annotations

import hashlib

import pytest

from worker.webhooks.signature import header_value, mac, verify

APP_ID = "2074138120372622546"
TIMESTAMP = "1602560967477"
BODY = (
    b'{"app_id":"2074138120372622546","event_name":"user_received_message",'
    b'"timestamp":"1602560967477"}'
)
SECRET = "sandbox-secret"
#: Computed outside Python: printf '%s' "$APP_ID$BODY$TIMESTAMP$SECRET" | sha256sum
KNOWN_MAC = "b2c847ab5f294cd2c054a3ef99df9928192c5986c6daa944669247f6fa85f29a"


def sign(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "app_id": APP_ID,
        "body": BODY,
        "timestamp": TIMESTAMP,
        "secret_key": SECRET,
    }
    fields.update(changes)
    return fields


def test_mac_matches_a_vector_computed_by_sha256sum() -> None:
    assert mac(app_id=APP_ID, body=BODY, timestamp=TIMESTAMP, secret_key=SECRET) == KNOWN_MAC


def test_mac_is_a_plain_sha256_of_the_concatenation() -> None:
    expected = hashlib.sha256(
        APP_ID.encode() + BODY + TIMESTAMP.encode() + SECRET.encode()
    ).hexdigest()
    assert mac(app_id=APP_ID, body=BODY, timestamp=TIMESTAMP, secret_key=SECRET) == expected


def test_header_value_has_the_mac_prefix() -> None:
    value = header_value(app_id=APP_ID, body=BODY, timestamp=TIMESTAMP, secret_key=SECRET)
    assert value == f"mac={KNOWN_MAC}"


@pytest.mark.parametrize(
    "header",
    [f"mac={KNOWN_MAC}", f"mac={KNOWN_MAC.upper()}", f"  mac={KNOWN_MAC} "],
)
def test_verify_accepts_the_right_mac(header: str) -> None:
    assert verify(header, app_id=APP_ID, body=BODY, timestamp=TIMESTAMP, secret_key=SECRET)


@pytest.mark.parametrize(
    "header",
    [None, "", KNOWN_MAC, f"sha256={KNOWN_MAC}", f"mac={KNOWN_MAC[:-1]}", "mac=", "mac=ü"],
)
def test_verify_refuses_a_missing_or_malformed_header(header: str | None) -> None:
    assert not verify(header, app_id=APP_ID, body=BODY, timestamp=TIMESTAMP, secret_key=SECRET)


@pytest.mark.parametrize(
    "change",
    [
        {"app_id": "another-app"},
        {"body": BODY.replace(b"user_received", b"user_received ")},
        {"timestamp": "1602560967478"},
        {"secret_key": "another-secret"},
    ],
)
def test_every_signed_part_counts(change: dict[str, object]) -> None:
    fields = sign(**change)
    assert not verify(f"mac={KNOWN_MAC}", **fields)  # type: ignore[arg-type]
