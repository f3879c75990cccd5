-- uses: ratelimit
-- rate_slot.lua: take a slot of an account's global rate limit (see lib/ratelimit.lua).
-- KEYS[1]  rate limiter TAT key, KEYS[2] 429 cool-off key
-- ARGV[1]  emission us, ARGV[2] tolerance us, ARGV[3] max wait ms
-- Returns {'ok', delay_ms, at_ms} | {'limited', wait_ms}
return rate_slot(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
