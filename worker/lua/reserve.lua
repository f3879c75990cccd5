-- reserve.lua: the account gates before a send, in one round trip.
-- KEYS[1]  paused hash of the account
-- KEYS[2]  quota hash of the account (remaining, daily, inflight)
-- KEYS[3]  template block key (present while the template's daily limit is reached)
-- ARGV[1]  quota units kept back (reserve floor)
-- ARGV[2]  '1' when this job is a probe of a paused account (it may pass the pause gate)
-- Returns {"ok", remaining_after} | {"paused"} | {"template_blocked"} | {"unknown"} | {"exhausted"}
-- A reserved unit is also counted in `inflight` until the send is settled (quota_settle.lua).
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return {'paused'}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {'template_blocked'}
end
local remaining = redis.call('HGET', KEYS[2], 'remaining')
if not remaining then
  return {'unknown'}
end
if tonumber(remaining) <= tonumber(ARGV[1]) then
  return {'exhausted'}
end
redis.call('HINCRBY', KEYS[2], 'inflight', 1)
return {'ok', tostring(redis.call('HINCRBY', KEYS[2], 'remaining', -1))}
