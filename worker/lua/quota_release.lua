-- quota_release.lua: settle a reserved unit whose send reported no quota figure.
-- KEYS[1]  quota hash of the account
-- ARGV[1]  '1' to give the unit back (Zalo surely did not send), '0' to keep it spent (sent, or
--          outcome unknown)
-- Returns the counter after the update, or -1 when the counter is gone (reset or expired).
if redis.call('HEXISTS', KEYS[1], 'remaining') == 0 then
  return -1
end
if tonumber(redis.call('HGET', KEYS[1], 'inflight') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'inflight', -1)
end
if ARGV[1] == '1' then
  return redis.call('HINCRBY', KEYS[1], 'remaining', 1)
end
return tonumber(redis.call('HGET', KEYS[1], 'remaining'))
