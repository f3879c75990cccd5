-- extend_ttl(key, ttl_ms): make an existing `key` live at least ttl_ms more, never shorter than
-- it already does (several writers with different horizons share some keys).
local function extend_ttl(key, ttl_ms)
  local pttl = redis.call('PTTL', key)
  if pttl == -1 or (pttl >= 0 and pttl < ttl_ms) then
    redis.call('PEXPIRE', key, ttl_ms)
  end
end
