-- unlock.lua: release a lock only if the caller still holds it.
-- KEYS[1] lock_key   the lock
-- ARGV[1] holder     the holder's token
-- Returns 1 when released, 0 otherwise.
local lock_key = KEYS[1]
local holder = ARGV[1]

if redis.call('GET', lock_key) == holder then
  return redis.call('DEL', lock_key)
end
return 0
