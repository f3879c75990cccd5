-- claim.lua: claim a job's idempotency key unless it is finished or held by a live claim.
-- KEYS[1]  idempotency hash of the job
-- ARGV[1]  owner (the task id claiming it)
-- ARGV[2]  claim ttl in ms (outlives the task's hard time limit, so a live claim is never stolen)
-- Returns {"claimed"} | {"sent", result_json} | {"dead", reason} | {"busy", pttl_ms}
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'sent' then
  return {'sent', redis.call('HGET', KEYS[1], 'result')}
end
if state == 'dead' then
  return {'dead', redis.call('HGET', KEYS[1], 'result') or ''}
end
if state == 'claimed' then
  return {'busy', tostring(redis.call('PTTL', KEYS[1]))}
end
redis.call('HSET', KEYS[1], 'state', 'claimed', 'owner', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'claimed'}
