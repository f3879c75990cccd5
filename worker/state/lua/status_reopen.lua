-- status_reopen.lua: a dead letter is replayed: its step is 'enqueued' again (the one move back a
-- state may make), so the enqueue record and the journey's order apply to it anew.
-- KEYS[1] status hash
-- Returns 1 when reopened, 0 when the step was not dead-lettered.
if redis.call('HGET', KEYS[1], 'state') ~= 'dead_lettered' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'enqueued')
return 1
