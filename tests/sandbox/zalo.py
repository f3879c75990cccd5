"""Raw calls to the sandbox's Zalo routes: these tests check the wire format itself."""

from __future__ import annotations

from typing import Any

import httpx

PHONE = "84987654321"
OTHER_PHONE = "84912345678"
TEMPLATE = "231001"
DATA = {"order_code": "ORD-1", "status": "shipped"}
ACCESS = "sandbox-access-token"


class ZaloCalls:
    """One method per Zalo call, returning the raw httpx response."""

    def __init__(self, http: httpx.Client, access_token: str = ACCESS) -> None:
        self.http = http
        self.access_token = access_token

    def get_token(
        self, phone: str = PHONE, token_type: str | None = None, *, access_token: str | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"phone": phone}
        if token_type is not None:
            body["token_type"] = token_type
        return self.http.post(
            "/journey/get-token",
            json=body,
            headers={"access_token": access_token or self.access_token},
        )

    def journey(self, phone: str = PHONE, token_type: str | None = None) -> str:
        """A new journey token (asserting success)."""
        body = self.get_token(phone, token_type).json()
        assert body["error"] == 0, body
        token: str = body["token"]
        return token

    def send(
        self,
        journey_token: str | None,
        *,
        phone: str = PHONE,
        template_id: str | int = TEMPLATE,
        template_data: object = DATA,
        tracking_id: str = "track-1",
        access_token: str | None = None,
    ) -> httpx.Response:
        headers = {"access_token": access_token or self.access_token}
        if journey_token is not None:
            headers["journey_token"] = journey_token
        body = {
            "phone": phone,
            "template_id": template_id,
            "template_data": template_data,
            "tracking_id": tracking_id,
        }
        return self.http.post("/message/template", json=body, headers=headers)

    def check_token(self, journey_token: str) -> httpx.Response:
        return self.http.get(
            "/journey/check-token",
            headers={"access_token": self.access_token, "journey_token": journey_token},
        )

    def quota(self, access_token: str | None = None) -> httpx.Response:
        return self.http.get(
            "/message/quota", headers={"access_token": access_token or self.access_token}
        )

    def status(self, message_id: str) -> httpx.Response:
        return self.http.get(
            "/message/status",
            params={"message_id": message_id},
            headers={"access_token": self.access_token},
        )

    def refresh(
        self,
        refresh_token: str,
        *,
        app_id: str = "sandbox-app",
        secret_key: str = "sandbox-secret",
    ) -> httpx.Response:
        form = {"refresh_token": refresh_token, "app_id": app_id, "grant_type": "refresh_token"}
        return self.http.post("/v4/oa/access_token", data=form, headers={"secret_key": secret_key})


def error_of(response: httpx.Response) -> int:
    """The JSON `error` of a Zalo answer, which always comes with HTTP 200."""
    assert response.status_code == 200, response.text
    code: int = response.json()["error"]
    return code
