-- now_us(): Redis server time in microseconds (every pod reads the same clock).
local function now_us()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000000 + tonumber(time[2])
end

-- tat_and_delay(rate_key, tolerance_us, now): the theoretical arrival time (never in the past)
-- and how long a slot taken at `now` would wait (us; negative: burst credit left).
local function tat_and_delay(rate_key, tolerance_us, now)
  local tat = math.max(tonumber(redis.call('GET', rate_key) or '0'), now)
  return tat, tat - tolerance_us - now
end

-- rate_slot(rate_key, cooloff_key, emission_us, tolerance_us, max_wait_ms): GCRA on Redis server
-- time in microseconds (milliseconds would round the interval: 1000/300 -> 3 ms, 333/s instead of
-- 300), shared by every process and pod. A slot is taken only if its delay is at most max_wait_ms.
-- emission_us = 1e6 / rate; tolerance_us = emission_us * (burst - 1); emission_us <= 0: no limit.
-- A cool-off key (set after Zalo's HTTP 429) holds everyone back until it expires.
-- The key holds the theoretical arrival time in us (a value from an older version, in ms, reads
-- as long past: the limiter starts afresh).
-- Returns {'ok', delay_ms, at_ms} (send after delay_ms, at Redis time at_ms; 0: now, no limit)
--       | {'limited', wait_ms}
local function rate_slot(rate_key, cooloff_key, emission_us, tolerance_us, max_wait_ms)
  local cool = redis.call('PTTL', cooloff_key)
  if cool > 0 then
    return {'limited', cool}
  end
  if emission_us <= 0 then
    return {'ok', 0, 0}
  end
  local now = now_us()
  local tat, delay = tat_and_delay(rate_key, tolerance_us, now)
  if delay > max_wait_ms * 1000 then
    return {'limited', math.ceil(delay / 1000)}
  end
  local next_tat = tat + emission_us
  local ttl_ms = math.ceil((next_tat - now + tolerance_us) / 1000) + 1000
  redis.call('SET', rate_key, string.format('%d', next_tat), 'PX', ttl_ms)
  if delay < 0 then
    delay = 0
  end
  return {'ok', math.ceil(delay / 1000), math.ceil((now + delay) / 1000)}
end

-- rate_wait(rate_key, cooloff_key, tolerance_us): how long (ms) a slot taken now would wait,
-- without taking it; a cool-off counts as a wait. 0 when no slot is pending.
local function rate_wait(rate_key, cooloff_key, tolerance_us)
  local cool = redis.call('PTTL', cooloff_key)
  if cool > 0 then
    return cool
  end
  local _, delay = tat_and_delay(rate_key, tolerance_us, now_us())
  return math.max(0, math.ceil(delay / 1000))
end
