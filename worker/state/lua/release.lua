-- release.lua: give a claim back (nothing was sent), only if the caller still owns it.
-- KEYS[1]  idempotency hash of the job
-- ARGV[1]  owner (task id)
-- Returns 1 when released, 0 otherwise.
if redis.call('HGET', KEYS[1], 'state') == 'claimed'
   and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
