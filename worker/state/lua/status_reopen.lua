-- status_reopen.lua: a dead letter is replayed: its step is 'enqueued' again (the one move back a
-- state may make), so the enqueue record and the journey's order apply to it anew.
-- KEYS[1] status_hash   the step's status
-- Returns 1 when reopened, 0 when the step was not dead-lettered.
local status_hash = KEYS[1]

if redis.call('HGET', status_hash, 'state') ~= 'dead_lettered' then
  return 0
end
redis.call('HSET', status_hash, 'state', 'enqueued')
return 1
