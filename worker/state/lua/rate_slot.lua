-- uses: ratelimit
-- rate_slot.lua: take a slot of an account's global rate limit (see lib/ratelimit.lua).
-- KEYS[1] rate_key       the account's rate limiter (theoretical arrival time)
-- KEYS[2] cooloff_key    the account's cool-off after a 429
-- ARGV[1] emission_us    one send per emission_us (<= 0: no limit)
-- ARGV[2] tolerance_us   burst credit
-- ARGV[3] max_wait_ms    the longest wait taken
-- Returns {'ok', delay_ms, at_ms} | {'limited', wait_ms}
local rate_key, cooloff_key = KEYS[1], KEYS[2]
local emission_us, tolerance_us = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_wait_ms = tonumber(ARGV[3])

return rate_slot(rate_key, cooloff_key, emission_us, tolerance_us, max_wait_ms)
