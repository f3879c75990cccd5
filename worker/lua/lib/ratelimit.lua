-- rate_slot(rate, cooloff, emission_ms, tolerance_ms, max_wait_ms): GCRA on Redis server time,
-- shared by every process and pod. A slot is taken only if its delay is at most max_wait_ms.
-- emission_ms = 1000 / rate; tolerance_ms = emission_ms * (burst - 1); emission_ms <= 0: no limit.
-- A cool-off key (set after Zalo's HTTP 429) holds everyone back until it expires.
-- Returns {'ok', delay_ms, at_ms} (send after delay_ms, at Redis time at_ms; 0: now, no limit)
--       | {'limited', wait_ms}
local function rate_slot(rate_key, cooloff_key, emission_ms, tolerance_ms, max_wait_ms)
  local cool = redis.call('PTTL', cooloff_key)
  if cool > 0 then
    return {'limited', cool}
  end
  if emission_ms <= 0 then
    return {'ok', 0, 0}
  end
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local tat = tonumber(redis.call('GET', rate_key) or '0')
  if tat < now then
    tat = now
  end
  local delay = tat - tolerance_ms - now
  if delay > max_wait_ms then
    return {'limited', delay}
  end
  local next_tat = tat + emission_ms
  redis.call('SET', rate_key, next_tat, 'PX', next_tat - now + tolerance_ms + 1000)
  if delay < 0 then
    delay = 0
  end
  return {'ok', delay, now + delay}
end
