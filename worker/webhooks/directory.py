"""Which configured account a webhook event belongs to, and the key that signs its events.

Events name the app (`app_id`) and usually the OA (`oa_id`, `oaId` or `sender.id`). One app may
serve several OAs: then each account sets `oa_id` and the event's OA picks among them. An event
of an OA configured with another `oa_id` belongs to no account here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import SecretStr

from worker.settings import Settings


@dataclass(frozen=True, slots=True)
class WebhookAccount:
    """A configured account as the receiver sees it."""

    name: str
    app_id: str
    oa_id: str | None
    secret_key: SecretStr  # the OA secret key that signs its events

    def matches(self, oa_id: str | None) -> bool:
        """False only when both sides name an OA and they differ."""
        return self.oa_id is None or oa_id is None or self.oa_id == oa_id


class AccountDirectory:
    """app_id (+ OA id) -> account; built once from Settings."""

    def __init__(self, accounts: Iterable[WebhookAccount]) -> None:
        self._by_app: dict[str, list[WebhookAccount]] = defaultdict(list)
        for account in accounts:
            self._by_app[account.app_id].append(account)

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountDirectory:
        """Every account with an app id and a key to check signatures with."""
        found = []
        for name in settings.account_names():
            account = settings.account(name)
            key = account and (account.webhook_secret_key or account.secret_key)
            if account is not None and account.app_id and key:
                found.append(WebhookAccount(name, account.app_id, account.oa_id, key))
        return cls(found)

    def resolve(self, app_id: str, oa_id: str | None) -> WebhookAccount | None:
        """The one account this event belongs to, or None (unknown app or OA, or ambiguous)."""
        candidates = [a for a in self._by_app.get(app_id, []) if a.matches(oa_id)]
        if len(candidates) > 1:
            candidates = [a for a in candidates if a.oa_id is not None and a.oa_id == oa_id]
        return candidates[0] if len(candidates) == 1 else None

    def __bool__(self) -> bool:
        return bool(self._by_app)
