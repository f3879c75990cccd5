-- park_claim_due.lua: lease parked jobs that are due, so exactly one releaser re-enqueues them.
-- KEYS[1]  parked sorted set (member: idempotency key, score: due ms)
-- KEYS[2]  parked jobs hash (idempotency key -> job json)
-- ARGV[1]  now ms, ARGV[2] lease ms (if the releaser dies, the job is due again after it),
-- ARGV[3]  max jobs to lease
-- Returns a flat list {member1, job1, member2, job2, ...}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, member in ipairs(due) do
  local job = redis.call('HGET', KEYS[2], member)
  if job then
    redis.call('ZADD', KEYS[1], until_ms, member)
    table.insert(out, member)
    table.insert(out, job)
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return out
