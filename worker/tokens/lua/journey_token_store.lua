-- journey_token_store.lua: store a journey token just made and release its creation lock, in one
-- round trip.
-- KEYS[1] token_hash   the journey token
-- KEYS[2] token_lock   its creation lock
-- ARGV[1] token        sealed if encryption is on
-- ARGV[2] journey_id
-- ARGV[3] created_at_ms
-- ARGV[4] expires_at_ms
-- ARGV[5] holder       the lock holder's token
-- Returns 1 when the lock was still ours (and is released), 0 otherwise; the token is stored
-- either way.
local token_hash, token_lock = KEYS[1], KEYS[2]
local token, journey_id, created_at_ms, expires_at_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local holder = ARGV[5]

redis.call('HSET', token_hash, 'token', token, 'journey_id', journey_id,
           'created_at_ms', created_at_ms, 'expires_at_ms', expires_at_ms)
redis.call('PEXPIREAT', token_hash, expires_at_ms)
if redis.call('GET', token_lock) == holder then
  return redis.call('DEL', token_lock)
end
return 0
