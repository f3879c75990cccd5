-- journey_token_drop.lua: forget a journey token Zalo rejected, unless it was already replaced.
-- KEYS[1]  journey token hash
-- ARGV[1]  journey_id of the rejected token
-- Returns 1 when dropped, 0 when the stored token is another (newer) one.
if redis.call('HGET', KEYS[1], 'journey_id') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
