"""The sandbox sends signed webhook events after accepted sends, retrying, never blocking."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.sandbox.zalo import PHONE, ZaloCalls
from tests.support import wait_until
from zns_dev.sandbox import SandboxControl

APP_ID = "sandbox-app"
SECRET = "sandbox-secret"
OA_ID = "sandbox-oa"


@dataclass
class Hook:
    """A webhook endpoint that records what it gets and answers the scripted statuses."""

    statuses: list[int] = field(default_factory=list)  # then 200
    hang_s: float = 0.0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else 200

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.received]


@pytest.fixture
def hook() -> Iterator[tuple[Hook, str]]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            time.sleep(state.hang_s)
            self.send_response(state.next_status())
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/zalo/webhook"
    server.shutdown()
    server.server_close()


def expected_mac(body: bytes, timestamp: str) -> str:
    return hashlib.sha256(APP_ID.encode() + body + timestamp.encode() + SECRET.encode()).hexdigest()


def test_no_webhooks_unless_a_url_is_set(zalo: ZaloCalls, control: SandboxControl) -> None:
    assert control.faults()["webhook_url"] is None
    assert zalo.send(zalo.journey()).json()["error"] == 0
    time.sleep(0.5)
    assert control.webhooks() == []


def test_first_send_of_a_journey_is_charged_then_delivered(
    zalo: ZaloCalls, control: SandboxControl, hook: tuple[Hook, str]
) -> None:
    # Given a webhook URL
    state, url = hook
    control.set_webhook(url, delay_ms=50)
    # When two messages go out on one journey token
    token = zalo.journey()
    first = zalo.send(token, tracking_id="step-1").json()["data"]
    second = zalo.send(token, tracking_id="step-2").json()["data"]
    # Then: one journey acknowledged, and one delivery per message, each signed
    wait_until(lambda: len(state.received) == 3, timeout_s=10, what="three webhook events")
    events = state.events()
    names = [event["event_name"] for event in events]
    assert names.count("event_journey_acknowledged") == 1
    deliveries = [event for event in events if event["event_name"] == "user_received_message"]
    assert {d["message"]["msg_id"] for d in deliveries} == {first["msg_id"], second["msg_id"]}
    assert {d["message"]["tracking_id"] for d in deliveries} == {"step-1", "step-2"}
    for delivery in deliveries:
        assert delivery["app_id"] == APP_ID
        assert delivery["sender"] == {"id": OA_ID}
        assert delivery["recipient"] == {"id": PHONE}
        assert int(delivery["message"]["delivery_time"]) >= int(first["sent_time"])
    charged = next(e for e in events if e["event_name"] == "event_journey_acknowledged")
    journeys = control.journey_tokens()
    assert charged["journey_id"] == journeys[0].journey_id
    assert charged["oa_id"] == OA_ID
    for headers, body in state.received:
        timestamp = json.loads(body)["timestamp"]
        assert abs(int(timestamp) - time.time() * 1000) < 60_000  # wall clock, in ms
        assert headers["x-zevent-signature"] == f"mac={expected_mac(body, timestamp)}"
        assert headers["content-type"] == "application/json"
    wait_until(lambda: len(control.webhooks()) == 3, timeout_s=5, what="three records")
    assert all(d.delivered and d.attempts == 1 for d in control.webhooks())


def test_failed_deliveries_are_retried_with_the_same_body(
    zalo: ZaloCalls, control: SandboxControl, hook: tuple[Hook, str]
) -> None:
    # Given an endpoint that fails twice
    state, url = hook
    state.statuses = [500, 503]
    control.set_webhook(url, delay_ms=0, retry_ms=50, attempts=4)
    token = zalo.journey()
    zalo.send(token)
    # Then the first event is sent three times, identical, and recorded once as delivered
    wait_until(lambda: len(control.webhooks()) == 2, timeout_s=10, what="two records")
    bodies = [body for _, body in state.received]
    assert len(bodies) == 4  # 3 tries of the first event + 1 of the second
    assert bodies[0] == bodies[1] == bodies[2]
    records = control.webhooks()
    assert [(r.attempts, r.http_status, r.delivered) for r in records] == [
        (3, 200, True),
        (1, 200, True),
    ]


def test_gives_up_after_the_last_attempt(zalo: ZaloCalls, control: SandboxControl) -> None:
    # Given nobody listening at the URL
    control.set_webhook("http://127.0.0.1:9/none", delay_ms=0, retry_ms=10, attempts=2)
    zalo.send(zalo.journey())
    wait_until(lambda: len(control.webhooks()) == 2, timeout_s=10, what="two records")
    assert [(r.attempts, r.http_status, r.delivered) for r in control.webhooks()] == [
        (2, None, False),
        (2, None, False),
    ]


def test_a_slow_endpoint_never_slows_the_send(
    zalo: ZaloCalls, control: SandboxControl, hook: tuple[Hook, str]
) -> None:
    state, url = hook
    state.hang_s = 2.0
    control.set_webhook(url, delay_ms=0)
    token = zalo.journey()
    started = time.monotonic()
    for step in range(3):
        assert zalo.send(token, tracking_id=f"s{step}").json()["error"] == 0
    assert time.monotonic() - started < 1.0


def test_reset_drops_pending_events(
    zalo: ZaloCalls, control: SandboxControl, hook: tuple[Hook, str]
) -> None:
    state, url = hook
    control.set_webhook(url, delay_ms=1500)
    zalo.send(zalo.journey())
    control.reset()
    time.sleep(2.0)
    assert state.received == []
    assert control.webhooks() == []
    assert control.faults()["webhook_url"] is None


def test_bad_webhook_url_is_refused(control: SandboxControl) -> None:
    with pytest.raises(Exception, match="400"):
        control.set_webhook("ftp://example.invalid/x")


def test_a_daily_quota_change_is_announced(control: SandboxControl, hook: tuple[Hook, str]) -> None:
    state, url = hook
    control.set_webhook(url)
    control.set_quota(5000)
    control.set_quota(5000, remaining=10)  # the daily figure did not change: no event
    wait_until(lambda: len(control.webhooks()) == 1, timeout_s=10, what="one record")
    time.sleep(0.3)
    [change] = state.events()
    assert change["event_name"] == "change_oa_daily_quota"
    assert change["oaId"] == OA_ID
    assert change["quota"] == {"prev_value": 1_000_000, "new_value": 5000}


def test_journey_tokens_carried_past_their_expiry_time_out(
    zalo: ZaloCalls, control: SandboxControl, hook: tuple[Hook, str]
) -> None:
    state, url = hook
    control.set_webhook(url)
    short = zalo.journey(token_type="token_logistics_7")
    zalo.journey(token_type="token_logistics_30")
    control.advance_clock(8 * 86_400)  # past 7 days, not 30
    wait_until(lambda: len(control.webhooks()) == 1, timeout_s=10, what="one record")
    [timeout] = state.events()
    assert timeout["event_name"] == "event_journey_time_out"
    tokens = {t.token: t for t in control.journey_tokens()}
    assert timeout["journey_id"] == tokens[short].journey_id
    assert timeout["oa_id"] == OA_ID
    control.advance_clock(60)  # already expired: not announced again
    time.sleep(0.3)
    assert len(state.events()) == 1
