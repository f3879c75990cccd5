-- park_claim_due.lua: lease parked jobs that are due, so exactly one releaser re-enqueues them.
-- KEYS[1] parked        the account's parked jobs (member: parking id, score: due ms)
-- KEYS[2] parked_jobs   the account's parked jobs (parking id -> job json)
-- ARGV[1] now_ms
-- ARGV[2] lease_ms      if the releaser dies, the job is due again after it
-- ARGV[3] limit         the most jobs to lease
-- Returns a flat list {parking_id1, job_json1, parking_id2, job_json2, ...}
local parked, parked_jobs = KEYS[1], KEYS[2]
local now_ms, lease_ms, limit = ARGV[1], ARGV[2], ARGV[3]

local due = redis.call('ZRANGEBYSCORE', parked, '-inf', now_ms, 'LIMIT', 0, tonumber(limit))
local out = {}
local until_ms = tonumber(now_ms) + tonumber(lease_ms)
for _, parking_id in ipairs(due) do
  local job = redis.call('HGET', parked_jobs, parking_id)
  if job then
    redis.call('ZADD', parked, until_ms, parking_id)
    table.insert(out, parking_id)
    table.insert(out, job)
  else
    redis.call('ZREM', parked, parking_id)
  end
end
return out
