-- finish.lua: record a job's final state.
-- KEYS[1]  idempotency hash of the job
-- ARGV[1]  owner (task id), ARGV[2] final state ('sent' | 'dead'), ARGV[3] result json,
-- ARGV[4]  retention in ms (how long a redelivery is still recognised)
-- 'sent' is the truth once Zalo accepted, so it is recorded even if the claim was lost; the first
-- 'sent' wins. 'dead' is recorded only by the claim's owner and never over 'sent'.
-- Returns 1 when recorded, 0 when left as it was.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'sent' then
  return 0
end
if ARGV[2] == 'dead' and state == 'claimed' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'owner', ARGV[1], 'result', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
