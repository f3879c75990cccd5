"""The state Redis: every key shape, the Lua scripts, one store per concern.

keys.py         every key shape, one prefix, `{account}` hash tags (Redis Cluster safe)
scripts.py      Lua scripts beside their builders (`lua/`, library in `lua/lib/`), pipelined calls
connection.py   Redis clients that count their round trips
locks.py        a lock with an owner and a ttl
step_gate.py    begin / finish of a step in one round trip each (`begin_step`, `finish_sent`)
idempotency.py  a step's claim: release, reopen, mark dead, state
quota.py        the daily quota counter shared by every pod
ratelimit.py    the global rate limit per account (GCRA on Redis's clock)
pauses.py       paused accounts
parking.py      parked steps and their release
lanes.py        each account's steps waiting for its capacity (realtime, bulk), released in order
ordering.py     numbered steps wait for the lower steps of their journey
deadletters.py  dead letters, kept whole until replayed or purged
step_status.py  each step's life, by idempotency key, tracking id or msg_id

May import: the vocabulary modules of `worker` (errors, clock, metrics, phone, settings, logs,
job, status). redis-py is used only here, in `tokens/` and in `messaging/`.
"""
