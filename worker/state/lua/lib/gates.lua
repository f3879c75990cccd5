-- gate(paused_key, quota_key, block_key, floor, probe): the account gates, without side effects
-- (floor: quota units kept back; probe '1': a probe of a paused account passes the pause gate).
-- Returns 'ok' | 'paused' | 'template_blocked' | 'unknown' | 'exhausted'
local function gate(paused_key, quota_key, block_key, floor, probe)
  if probe ~= '1' and redis.call('EXISTS', paused_key) == 1 then
    return 'paused'
  end
  if redis.call('EXISTS', block_key) == 1 then
    return 'template_blocked'
  end
  local remaining = redis.call('HGET', quota_key, 'remaining')
  if not remaining then
    return 'unknown'
  end
  if tonumber(remaining) <= tonumber(floor) then
    return 'exhausted'
  end
  return 'ok'
end

-- reserve_unit(quota_key): take one unit, counted in `inflight` until settled. Returns remaining.
local function reserve_unit(quota_key)
  redis.call('HINCRBY', quota_key, 'inflight', 1)
  return redis.call('HINCRBY', quota_key, 'remaining', -1)
end
