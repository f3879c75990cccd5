"""Parsing Zalo's webhook bodies: tolerant of its quirks, strict about what we need."""

from __future__ import annotations

import json

import pytest

from worker.webhooks.events import (
    BadEvent,
    DailyQuotaChanged,
    Delivered,
    JourneyEvent,
    PermissionRevoked,
    epoch_ms,
    parse_envelope,
    parse_event,
)

DELIVERY = {
    "sender": {"id": "2893352839501541173"},
    "recipient": {"id": "84123456789"},
    "event_name": "user_received_message",
    "message": {
        "delivery_time": "1602960467432",
        "msg_id": "15a0cc0bbb13bd4ce403",
        "tracking_id": "order-88213",
    },
    "app_id": "2074138120372622546",
    "timestamp": "1602560967477",
}


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def test_a_delivery_as_zalo_documents_it() -> None:
    envelope = parse_envelope(body(DELIVERY))
    assert envelope.app_id == "2074138120372622546"
    assert envelope.oa_id == "2893352839501541173"  # sender.id
    assert envelope.timestamp == "1602560967477"
    assert envelope.timestamp_ms == 1602560967477
    event = parse_event(envelope)
    assert event == Delivered("15a0cc0bbb13bd4ce403", "order-88213", 1602960467432)
    assert event.event_id == "delivered:15a0cc0bbb13bd4ce403"


def test_numbers_may_come_as_numbers_and_seconds_as_seconds() -> None:
    data = {**DELIVERY, "app_id": 2074138120372622546, "timestamp": 1602560967}
    data["message"] = {"msg_id": "m1", "delivery_time": 1602960467}
    envelope = parse_envelope(body(data))
    assert envelope.app_id == "2074138120372622546"
    assert envelope.timestamp == "1602560967"  # as written: it is what was signed
    assert envelope.timestamp_ms == 1602560967000
    assert parse_event(envelope) == Delivered("m1", None, 1602960467000)


def test_a_delivery_without_delivery_time_takes_the_event_time() -> None:
    data = {**DELIVERY, "message": {"msg_id": "m1"}}
    assert parse_event(parse_envelope(body(data))) == Delivered("m1", None, 1602560967477)


@pytest.mark.parametrize(
    ("name", "kind", "key"),
    [
        ("event_journey_acknowledged", "charged", "journey_id"),
        ("event_journey_time_out", "timed_out", "journeyId"),
    ],
)
def test_journey_events(name: str, kind: str, key: str) -> None:
    data = {"app_id": "a", "oa_id": "o", "event_name": name, key: "j-1"}
    data["timestamp"] = "1700000000000"
    envelope = parse_envelope(body(data))
    assert envelope.oa_id == "o"
    event = parse_event(envelope)
    assert event == JourneyEvent("j-1", kind, 1700000000000)  # type: ignore[arg-type]
    assert event.event_id == f"{kind}:j-1"


def test_quota_change_with_camel_case_oa_id() -> None:
    data = {
        "app_id": "a",
        "oaId": "o",
        "event_name": "change_oa_daily_quota",
        "quota": {"prev_value": 1000, "new_value": "2000"},
        "timestamp": "1700000000000",
    }
    envelope = parse_envelope(body(data))
    assert envelope.oa_id == "o"
    assert parse_event(envelope) == DailyQuotaChanged(2000, 1000, 1700000000000)


def test_permission_revoked() -> None:
    data = {"app_id": "a", "event_name": "permission_revoked", "timestamp": "1700000000000"}
    assert parse_event(parse_envelope(body(data))) == PermissionRevoked(1700000000000)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (body({"event_name": "x", "timestamp": "1"}), "app_id"),
        (body({"app_id": "a", "timestamp": "1"}), "event_name"),
        (body({"app_id": "a", "event_name": "x"}), "timestamp"),
        (body({"app_id": "a", "event_name": "x", "timestamp": "soon"}), "timestamp"),
        (body({"app_id": "a", "event_name": "x", "timestamp": -5}), "timestamp"),
        (body({"app_id": True, "event_name": "x", "timestamp": "1"}), "app_id"),
    ],
)
def test_bad_envelopes(raw: bytes, reason: str) -> None:
    with pytest.raises(BadEvent, match=reason):
        parse_envelope(raw)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"event_name": "user_received_message"}, "message"),
        ({"event_name": "user_received_message", "message": {"msg_id": ""}}, "msg_id"),
        (
            {
                "event_name": "user_received_message",
                "message": {"msg_id": "m", "delivery_time": "x"},
            },
            "delivery_time",
        ),
        ({"event_name": "event_journey_acknowledged"}, "journey_id"),
        ({"event_name": "change_oa_daily_quota", "quota": {"prev_value": 1}}, "new_value"),
        ({"event_name": "change_oa_daily_quota", "quota": "2000"}, "quota"),
    ],
)
def test_events_missing_what_we_need(fields: dict[str, object], reason: str) -> None:
    envelope = parse_envelope(body({"app_id": "a", "timestamp": "1700000000000", **fields}))
    with pytest.raises(BadEvent, match=reason):
        parse_event(envelope)


def test_bad_event_messages_never_carry_values() -> None:
    data = {**DELIVERY, "message": {"msg_id": "m", "delivery_time": "84987654321x"}}
    with pytest.raises(BadEvent) as caught:
        parse_event(parse_envelope(body(data)))
    assert "84987654321" not in str(caught.value)


def test_epoch_ms() -> None:
    assert epoch_ms(1_700_000_000) == 1_700_000_000_000
    assert epoch_ms(1_700_000_000_000) == 1_700_000_000_000
