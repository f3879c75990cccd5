-- journey_token_store.lua: store a journey token just made and release its creation lock, in one
-- round trip (was a MULTI/EXEC, then unlock.lua).
-- KEYS[1] journey token hash   KEYS[2] its creation lock
-- ARGV[1] token (sealed if encryption is on)   ARGV[2] journey_id   ARGV[3] created_at_ms
-- ARGV[4] expires_at_ms   ARGV[5] the lock holder's token
-- Returns 1 when the lock was still ours (and is released), 0 otherwise; the token is stored
-- either way.
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'journey_id', ARGV[2],
           'created_at_ms', ARGV[3], 'expires_at_ms', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
if redis.call('GET', KEYS[2]) == ARGV[5] then
  return redis.call('DEL', KEYS[2])
end
return 0
