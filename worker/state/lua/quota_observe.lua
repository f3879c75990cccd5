-- uses: quota
-- quota_observe.lua: fold a remainingQuota figure reported by Zalo into the shared counter.
-- KEYS[1] quota_hash     the account's quota counter (remaining, daily, inflight, updated_at_ms)
-- ARGV[1] reported       remainingQuota Zalo reported
-- ARGV[2] daily          dailyQuota Zalo reported ('' if none)
-- ARGV[3] mode           'sent' | 'init' | 'set' (see observe() in lib/quota.lua)
-- ARGV[4] expire_at_ms   when the counter expires (the next reset)
-- ARGV[5] now_ms
-- ARGV[6] settled_before  the `settled` count read before the probe's HTTP call ('' if unknown)
-- Returns the counter after the update.
local quota_hash = KEYS[1]
local reported, daily, mode, expire_at_ms, now_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local settled_before = ARGV[6]

return observe(quota_hash, reported, daily, mode, expire_at_ms, now_ms, settled_before)
