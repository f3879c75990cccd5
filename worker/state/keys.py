"""Every Redis key shape, under one prefix, with hash tags.

All keys of one account share the hash tag `{<account>}` so a Lua script may touch several of them
and the design runs unchanged on Redis Cluster. Dead letters are global and share `{dl}`.
"""

from __future__ import annotations

import hashlib

from worker.settings import ACCOUNT_NAME

#: Producer-supplied parts longer than this are hashed so keys stay short and bounded.
MAX_RAW_PART = 100


def _part(value: str) -> str:
    if len(value) <= MAX_RAW_PART:
        return value
    return "h:" + hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


class Keys:
    """Builds key names; knows nothing of redis-py."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _acct(self, account: str) -> str:
        if not ACCOUNT_NAME.fullmatch(account):
            raise ValueError(f"invalid account name {account!r}")
        return f"{self.prefix}:{{{account}}}"

    def idempotency(self, account: str, key: str) -> str:
        """Hash: state (claimed|sent|dead), owner, result."""
        return f"{self._acct(account)}:idem:{_part(key)}"

    def quota(self, account: str) -> str:
        """Hash: remaining, daily, updated_at_ms."""
        return f"{self._acct(account)}:quota"

    def template_block(self, account: str, template_id: str) -> str:
        """String present while a template's daily limit (-147) is reached."""
        return f"{self._acct(account)}:tplblock:{_part(template_id)}"

    def rate(self, account: str) -> str:
        """String: the global rate limiter's theoretical arrival time (GCRA), in ms."""
        return f"{self._acct(account)}:rate"

    def cooloff(self, account: str) -> str:
        """String present while every pod holds back after Zalo's HTTP 429."""
        return f"{self._acct(account)}:cooloff"

    def paused(self, account: str) -> str:
        """Hash present while the account is paused: reason, code, since_ms."""
        return f"{self._acct(account)}:paused"

    def journey_token(self, account: str, phone: str, journey: str, token_type: str) -> str:
        """Hash: token, journey_id, created_at_ms, expires_at_ms."""
        return f"{self._acct(account)}:jt:{phone}:{_part(journey)}:{token_type}"

    def journey_token_lock(self, account: str, phone: str, journey: str, token_type: str) -> str:
        """Single-flight lock for creating that journey token."""
        return self.lock_of(self.journey_token(account, phone, journey, token_type))

    @staticmethod
    def lock_of(journey_token_key: str) -> str:
        """The creation lock of the journey token stored at `journey_token_key`."""
        return journey_token_key + ":lock"

    def oauth(self, account: str) -> str:
        """Hash: access_token, access_expires_at_ms, refresh_token, refreshed_at_ms, generation."""
        return f"{self._acct(account)}:oauth"

    def oauth_lock(self, account: str) -> str:
        """Single-flight lock for refreshing the OA access token."""
        return f"{self._acct(account)}:oauth:lock"

    def parked(self, account: str) -> str:
        """Sorted set: idempotency key -> due time (ms); +inf while waiting for a resume."""
        return f"{self._acct(account)}:parked"

    def parked_jobs(self, account: str) -> str:
        """Hash: idempotency key -> parked job JSON."""
        return f"{self._acct(account)}:parked:jobs"

    def lane(self, account: str, lane: str) -> str:
        """List: steps waiting for the account's capacity in one lane (JSON entries, FIFO)."""
        return f"{self._acct(account)}:lane:{lane}"

    def lane_leases(self, account: str) -> str:
        """Sorted set: lane entries taken by a feeder, not yet published -> lease end (ms)."""
        return f"{self._acct(account)}:lane:leases"

    def lane_released(self, account: str) -> str:
        """Sorted set: steps a feeder released to the queue, not begun yet -> deadline (ms)."""
        return f"{self._acct(account)}:lane:released"

    def inflight(self, account: str) -> str:
        """Sorted set: the account's steps between `begin` and their end -> deadline (ms)."""
        return f"{self._acct(account)}:inflight"

    def lanes_active(self) -> str:
        """Set: accounts that may have steps waiting in a lane (a hint for the feeders)."""
        return f"{self.prefix}:{{lanes}}:active"

    def probe_lock(self, account: str, what: str) -> str:
        """Rate-limits a periodic probe (quota, paused account) across every process."""
        return f"{self._acct(account)}:probe:{what}"

    def webhook_event(self, account: str, event_id: str) -> str:
        """String present while a webhook event is remembered (redeliveries are duplicates)."""
        return f"{self._acct(account)}:wh:{_part(event_id)}"

    def status(self, account: str, key: str) -> str:
        """Hash: one step's life (state, enqueued/sent/delivered/dead times, msg_id, ...)."""
        return f"{self._acct(account)}:st:k:{_part(key)}"

    def status_by_msg(self, account: str, msg_id: str) -> str:
        """String: Zalo's msg_id -> the step's status key name."""
        return f"{self._acct(account)}:st:m:{_part(msg_id)}"

    def status_by_tracking(self, account: str, tracking_id: str) -> str:
        """String: our tracking_id -> the step's status key name."""
        return f"{self._acct(account)}:st:t:{_part(tracking_id)}"

    def early_delivery(self, account: str, msg_id: str) -> str:
        """Hash: a delivery reported before its send was recorded (merged when it is)."""
        return f"{self._acct(account)}:st:d:{_part(msg_id)}"

    def journey_steps(self, account: str, phone: str, journey: str) -> str:
        """Sorted set: the journey's status key names -> step number (0 without one)."""
        return f"{self._acct(account)}:st:j:{phone}:{_part(journey)}"

    def journey_events(self, account: str, journey_id: str) -> str:
        """Hash: charged_at_ms / timed_out_at_ms of one Zalo journey (from webhooks)."""
        return f"{self._acct(account)}:st:e:{_part(journey_id)}"

    def order_pending(self, account: str, phone: str, journey: str) -> str:
        """Sorted set: the journey's numbered steps not yet sent or dead-lettered -> step."""
        return f"{self._acct(account)}:ord:{phone}:{_part(journey)}"

    def order_waiters(self, account: str, phone: str, journey: str) -> str:
        """Set: parking ids of the journey's steps parked until a lower step finishes."""
        return self.order_pending(account, phone, journey) + ":wait"

    def meta_seal(self) -> str:
        """String: the key that seals the worker's `_meta` (worker/pipeline/step_meta.py)."""
        return f"{self.prefix}:meta-seal"

    def dead_letter_index(self) -> str:
        """Sorted set: dead-letter id -> time (ms)."""
        return f"{self.prefix}:{{dl}}:index"

    def dead_letter_jobs(self) -> str:
        """Hash: dead-letter id -> entry JSON."""
        return f"{self.prefix}:{{dl}}:jobs"
