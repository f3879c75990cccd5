-- journey_token_drop.lua: forget a journey token Zalo rejected, unless it was already replaced.
-- KEYS[1] token_hash   the journey token
-- ARGV[1] journey_id   the rejected token's
-- Returns 1 when dropped, 0 when the stored token is another (newer) one.
local token_hash = KEYS[1]
local journey_id = ARGV[1]

if redis.call('HGET', token_hash, 'journey_id') == journey_id then
  redis.call('DEL', token_hash)
  return 1
end
return 0
