-- quota_release.lua: give back a reserved unit when Zalo surely did not send.
-- KEYS[1]  quota hash of the account
-- Returns the counter after the update, or -1 when the counter is gone (reset or expired).
if redis.call('HEXISTS', KEYS[1], 'remaining') == 0 then
  return -1
end
return redis.call('HINCRBY', KEYS[1], 'remaining', 1)
