"""Dead letters: the full job, the reason, the Zalo code and the attempt history, until an operator
replays or purges them. Nothing is trimmed silently."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from worker.clock import Clock, ms
from worker.state.keys import Keys


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered job."""

    id: str
    reason: str
    error_class: str
    code: int | None
    account: str | None
    idempotency_key: str | None
    kwargs: Any  # the job as received (possibly malformed, hence Any)
    history: list[dict[str, Any]] = field(default_factory=list)
    task_id: str | None = None
    dead_at_ms: int = 0

    def to_json(self) -> str:
        """Serialised for Redis."""
        return json.dumps(asdict(self), separators=(",", ":"), default=repr)

    @classmethod
    def from_json(cls, text: str) -> DeadLetter:
        """Parse a stored entry."""
        return cls(**json.loads(text))


class DeadLetterStore:
    """Global dead-letter list: add, list, get, remove, count."""

    def __init__(self, client: redis.Redis, keys: Keys, *, clock: Clock) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock

    def add(
        self,
        *,
        reason: str,
        error_class: str,
        code: int | None,
        kwargs: Any,
        account: str | None = None,
        idempotency_key: str | None = None,
        history: list[dict[str, Any]] | None = None,
        task_id: str | None = None,
    ) -> DeadLetter:
        """Store a dead letter; returns it with its id."""
        entry = DeadLetter(
            id=uuid.uuid4().hex,
            reason=reason,
            error_class=error_class,
            code=code,
            account=account,
            idempotency_key=idempotency_key,
            kwargs=kwargs,
            history=history or [],
            task_id=task_id,
            dead_at_ms=ms(self._clock()),
        )
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self._keys.dead_letter_jobs(), entry.id, entry.to_json())
        pipe.zadd(self._keys.dead_letter_index(), {entry.id: entry.dead_at_ms})
        pipe.execute()
        return entry

    def entries(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """Oldest first."""
        ids: list[str] = self._client.zrange(  # type: ignore[assignment]
            self._keys.dead_letter_index(), offset, offset + limit - 1
        )
        return self._load(ids)

    def all_ids(self) -> list[str]:
        """Every dead-letter id, oldest first."""
        return list(self._client.zrange(self._keys.dead_letter_index(), 0, -1))  # type: ignore[arg-type]

    def get(self, entry_id: str) -> DeadLetter | None:
        """One entry by id."""
        loaded = self._load([entry_id])
        return loaded[0] if loaded else None

    def remove(self, entry_ids: list[str]) -> int:
        """Delete entries (after a replay, or a purge); returns how many existed."""
        if not entry_ids:
            return 0
        pipe = self._client.pipeline(transaction=True)
        pipe.zrem(self._keys.dead_letter_index(), *entry_ids)
        pipe.hdel(self._keys.dead_letter_jobs(), *entry_ids)
        return int(pipe.execute()[0])

    def count(self) -> int:
        """How many dead letters are kept."""
        return int(self._client.zcard(self._keys.dead_letter_index()))

    def _load(self, ids: list[str]) -> list[DeadLetter]:
        if not ids:
            return []
        bodies: list[str | None] = self._client.hmget(self._keys.dead_letter_jobs(), ids)  # type: ignore[assignment]
        return [DeadLetter.from_json(body) for body in bodies if body]
