-- release.lua: give a claim back (nothing was sent), only if the caller still owns it.
-- KEYS[1] idem_hash   the job's idempotency hash
-- KEYS[2] inflight    the account's steps in flight (this one leaves)
-- ARGV[1] owner       the claim's owner: a uuid per execution of the step
-- Returns 1 when released, 0 otherwise.
local idem_hash, inflight = KEYS[1], KEYS[2]
local owner = ARGV[1]

redis.call('ZREM', inflight, owner)
if redis.call('HGET', idem_hash, 'state') == 'claimed'
   and redis.call('HGET', idem_hash, 'owner') == owner then
  redis.call('DEL', idem_hash)
  return 1
end
return 0
